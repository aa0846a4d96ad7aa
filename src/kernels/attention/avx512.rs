//! AVX-512 path: 16 keys (scores) or 16 output columns (`P V`) per zmm, up to 4 query rows × 4
//! vectors of accumulators; the same operations per element as `scalar.rs`.

use std::arch::x86_64::*;

use super::bf16::{FLUSH_BELOW, PairBlock, Rows, round_interleave_tail, round_pairs_tail};
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
unsafe fn scores_dot(b: &Block, scores: &mut [f32]) {
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
    let masks: [__mmask16; N] = std::array::from_fn(|t| {
        let left = width.saturating_sub(16 * t);
        if left >= 16 { !0 } else { (1u16 << left) - 1 }
    });
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

// ---- The bf16 path (`bf16.rs`): rounding, and the pair kernels twice over (`vdpbf16ps`, and two
// FMAs per pair where AVX512_BF16 is absent; the same bits). ----

/// 16 floats rounded as `bf16::round`, each in the low half of its 32-bit lane.
#[inline]
#[target_feature(enable = "avx512f")]
fn round16(x: __m512) -> __m512i {
    let b = _mm512_castps_si512(x);
    let high = _mm512_srli_epi32::<16>(b);
    let lsb = _mm512_and_si512(high, _mm512_set1_epi32(1));
    let bias = _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff));
    let rounded = _mm512_srli_epi32::<16>(_mm512_add_epi32(b, bias));
    let abs = _mm512_and_si512(b, _mm512_set1_epi32(0x7fff_ffff));
    let small = _mm512_cmplt_epu32_mask(abs, _mm512_set1_epi32(FLUSH_BELOW.to_bits() as i32));
    let nan = _mm512_cmpgt_epu32_mask(abs, _mm512_set1_epi32(0x7f80_0000));
    let sign = _mm512_and_si512(high, _mm512_set1_epi32(0x8000));
    let quiet = _mm512_or_si512(high, _mm512_set1_epi32(0x40));
    _mm512_mask_mov_epi32(_mm512_mask_mov_epi32(rounded, small, sign), nan, quiet)
}

/// `x` with every magnitude below `FLUSH_BELOW` replaced by a zero of its sign: what
/// `bf16::round` does before rounding, so `vcvtne2ps2bf16` (nearest even, NaN quieted as
/// `bf16::round` does) then gives its bits.
#[inline]
#[target_feature(enable = "avx512f")]
fn flush_small(x: __m512) -> __m512 {
    let small = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(_mm512_abs_ps(x), _mm512_set1_ps(FLUSH_BELOW));
    let bits = _mm512_castps_si512(x);
    let sign = _mm512_and_si512(bits, _mm512_set1_epi32(i32::MIN));
    _mm512_castsi512_ps(_mm512_mask_mov_epi32(bits, small, sign))
}

/// 32 floats as 32 bf16 in order (`lo` first), by `vcvtne2ps2bf16`.
#[inline]
#[target_feature(enable = "avx512f,avx512bf16")]
fn round32_native(lo: __m512, hi: __m512) -> __m512i {
    let h = _mm512_cvtne2ps_pbh(flush_small(hi), flush_small(lo));
    // SAFETY: __m512bh and __m512i are both 64 bytes of plain lanes; every bit pattern is valid.
    unsafe { std::mem::transmute::<__m512bh, __m512i>(h) }
}

/// `bf16::round_rows`: 32 floats (16 pairs) per step where the CPU converts to bf16, else 16.
///
/// # Safety
/// The CPU must support avx512f; `dst` holds `(rows − 1)·dst_stride + ⌈len / 2⌉` pairs.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn round_rows(src: Rows, dst: &mut [u32], dst_stride: usize) {
    if native_bf16() {
        // SAFETY: avx512bf16 checked; forwarded.
        unsafe { round_rows_native(src, dst, dst_stride) }
    } else {
        for r in 0..src.rows {
            let row = &mut dst[r * dst_stride..r * dst_stride + src.len.div_ceil(2)];
            // SAFETY: avx512f per the contract; `row` holds ⌈len / 2⌉ pairs.
            unsafe { round_row_from(src.row(r), row, 0) };
        }
    }
}

/// [`round_rows`] with `vcvtne2ps2bf16` for the whole 32-float steps.
///
/// # Safety
/// As [`round_rows`], and the CPU supports avx512bf16.
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn round_rows_native(src: Rows, dst: &mut [u32], dst_stride: usize) {
    let whole = src.len / 32 * 32;
    for r in 0..src.rows {
        let (row, out) = (
            src.row(r),
            &mut dst[r * dst_stride..r * dst_stride + src.len.div_ceil(2)],
        );
        for i in (0..whole).step_by(32) {
            // SAFETY: floats i .. i + 32 of `row` and pairs i/2 .. i/2 + 16 of `out` exist.
            unsafe {
                let lo = _mm512_loadu_ps(row[i..].as_ptr());
                let hi = _mm512_loadu_ps(row[i + 16..].as_ptr());
                _mm512_storeu_epi32(out[i / 2..].as_mut_ptr().cast(), round32_native(lo, hi));
            }
        }
        // SAFETY: avx512f per the contract.
        unsafe { round_row_from(row, out, whole) };
    }
}

/// One row's pairs from float `from` (even) on: 16 floats per step by [`round16`], then the
/// scalar tail.
///
/// # Safety
/// The CPU must support avx512f; `dst.len() == ⌈src.len() / 2⌉`.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn round_row_from(src: &[f32], dst: &mut [u32], from: usize) {
    let whole = from.max(src.len() / 16 * 16);
    for i in (from..whole).step_by(16) {
        // SAFETY: floats i .. i + 16 of `src` and pairs i/2 .. i/2 + 8 of `dst` exist.
        unsafe {
            let h = _mm512_cvtepi32_epi16(round16(_mm512_loadu_ps(src[i..].as_ptr())));
            _mm256_storeu_si256(dst[i / 2..].as_mut_ptr().cast(), h);
        }
    }
    round_pairs_tail(src, dst, whole);
}

/// `bf16::interleave_rows`, 16 columns per step.
///
/// # Safety
/// The CPU must support avx512f; `dst` holds `⌈rows / 2⌉ · len` pairs.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn interleave_rows(src: Rows, dst: &mut [u32]) {
    let (len, whole) = (src.len, src.len / 16 * 16);
    for j2 in 0..src.rows.div_ceil(2) {
        let a = src.row(2 * j2);
        let b = (2 * j2 + 1 < src.rows).then(|| src.row(2 * j2 + 1));
        let out = &mut dst[j2 * len..(j2 + 1) * len];
        for c in (0..whole).step_by(16) {
            // SAFETY: columns c .. c + 16 of `a`, `b` and `out` exist.
            unsafe {
                let lo = round16(_mm512_loadu_ps(a[c..].as_ptr()));
                let hi = match b {
                    Some(b) => _mm512_slli_epi32::<16>(round16(_mm512_loadu_ps(b[c..].as_ptr()))),
                    None => _mm512_setzero_si512(),
                };
                _mm512_storeu_epi32(out[c..].as_mut_ptr().cast(), _mm512_or_si512(lo, hi));
            }
        }
        round_interleave_tail(a, b, out, whole);
    }
}

/// Whether to use `vdpbf16ps`: the CPU has it and the tests did not ask for the emulation.
fn native_bf16() -> bool {
    is_x86_feature_detected!("avx512bf16") && !super::bf16_emulation_forced()
}

/// The block's scores (`bf16::scores_pairs`'s order).
///
/// # Safety
/// The CPU must support avx512f; the buffers have the lengths [`PairBlock`] describes.
pub(super) unsafe fn scores_pairs(b: &PairBlock, q: &[u32], kp: &[u32], scores: &mut [f32]) {
    // SAFETY: forwarded; avx512bf16 checked for the native kernels.
    unsafe {
        if native_bf16() {
            native::scores(b, q, kp, scores)
        } else {
            emulated::scores(b, q, kp, scores)
        }
    }
}

/// The block's `P V` (`bf16::values_pairs`'s order).
///
/// # Safety
/// The CPU must support avx512f; the buffers have the lengths [`PairBlock`] describes; each
/// `out` pointer is valid for `dim` writes and exclusive to this call.
pub(super) unsafe fn values_pairs(b: &PairBlock, p: &[u32], vp: &[u32], out: &[*mut f32]) {
    // SAFETY: forwarded; avx512bf16 checked for the native kernels.
    unsafe {
        if native_bf16() {
            native::values(b, p, vp, out)
        } else {
            emulated::values(b, p, vp, out)
        }
    }
}

#[inline]
#[target_feature(enable = "avx512f")]
fn prep_native(k: __m512i) -> __m512i {
    k
}

#[inline]
#[target_feature(enable = "avx512f")]
fn bcast_native(pair: u32) -> __m512i {
    _mm512_set1_epi32(pair as i32)
}

#[inline]
#[target_feature(enable = "avx512f,avx512bf16")]
fn dot_native(acc: __m512, q: __m512i, k: __m512i) -> __m512 {
    // SAFETY: __m512i and __m512bh are both 64 bytes of plain lanes; every bit pattern is valid.
    let (q, k) = unsafe {
        (
            std::mem::transmute::<__m512i, __m512bh>(q),
            std::mem::transmute::<__m512i, __m512bh>(k),
        )
    };
    _mm512_dpbf16_ps(acc, q, k)
}

/// A pair vector split into its (odd, even) elements as floats.
#[inline]
#[target_feature(enable = "avx512f")]
fn prep_emulated(k: __m512i) -> (__m512, __m512) {
    let odd = _mm512_and_si512(k, _mm512_set1_epi32(0xffff_0000_u32 as i32));
    let even = _mm512_slli_epi32::<16>(k);
    (_mm512_castsi512_ps(odd), _mm512_castsi512_ps(even))
}

#[inline]
#[target_feature(enable = "avx512f")]
fn bcast_emulated(pair: u32) -> (__m512, __m512) {
    (
        _mm512_set1_ps(f32::from_bits(pair & 0xffff_0000)),
        _mm512_set1_ps(f32::from_bits(pair << 16)),
    )
}

#[inline]
#[target_feature(enable = "avx512f")]
fn dot_emulated(acc: __m512, q: (__m512, __m512), k: (__m512, __m512)) -> __m512 {
    _mm512_fmadd_ps(q.1, k.1, _mm512_fmadd_ps(q.0, k.0, acc))
}

/// The pair kernels for one way of computing a pair step: `$prep` turns a loaded vector of
/// pairs into the operand `$dot` takes, `$bcast` one pair of a query or probability row.
macro_rules! pair_kernels {
    ($module:ident, $features:literal, $k:ty, $prep:ident, $bcast:ident, $dot:ident) => {
        mod $module {
            use std::arch::x86_64::*;

            use super::super::bf16::PairBlock;
            use super::{$bcast, $dot, $prep};

            /// # Safety
            /// As `super::scores_pairs`, and the CPU has `$features`.
            #[target_feature(enable = $features)]
            pub(in super::super) unsafe fn scores(
                b: &PairBlock,
                q: &[u32],
                kp: &[u32],
                scores: &mut [f32],
            ) {
                if b.pairs == 0 {
                    scores[..b.rows * b.keys].fill(0.0);
                    return;
                }
                assert!(q.len() >= b.rows * b.pairs && scores.len() >= b.rows * b.keys);
                // SAFETY: forwarded; `rows` is 1..=ROWS.
                unsafe {
                    match b.rows {
                        1 => scores_rows::<1>(b, q, kp, scores),
                        2 => scores_rows::<2>(b, q, kp, scores),
                        3 => scores_rows::<3>(b, q, kp, scores),
                        _ => scores_rows::<4>(b, q, kp, scores),
                    }
                }
            }

            #[inline]
            #[target_feature(enable = $features)]
            unsafe fn scores_rows<const R: usize>(
                b: &PairBlock,
                q: &[u32],
                kp: &[u32],
                scores: &mut [f32],
            ) {
                let mut j0 = 0;
                while j0 < b.keys {
                    let n = ((b.keys - j0) / 16).min(4);
                    // SAFETY: forwarded; keys j0 .. j0 + 16·n ≤ keys.
                    unsafe {
                        match n {
                            1 => scores_whole::<R, 1>(b, q, kp, scores, j0),
                            2 => scores_whole::<R, 2>(b, q, kp, scores, j0),
                            3 => scores_whole::<R, 3>(b, q, kp, scores, j0),
                            _ => scores_whole::<R, 4>(b, q, kp, scores, j0),
                        }
                    }
                    j0 += 16 * n;
                }
            }

            /// Keys `j0 .. j0 + 16·N` of `R` rows: `Σ_c2` over the pairs in order.
            #[inline]
            #[target_feature(enable = $features)]
            unsafe fn scores_whole<const R: usize, const N: usize>(
                b: &PairBlock,
                q: &[u32],
                kp: &[u32],
                scores: &mut [f32],
                j0: usize,
            ) {
                let (keys, pairs) = (b.keys, b.pairs);
                // Bounds checked once: the last line read ends at (pairs − 1)·keys + j0 + 16·N.
                assert!((pairs - 1) * keys + j0 + 16 * N <= kp.len() && q.len() >= R * pairs);
                let kp = kp[j0..].as_ptr();
                let mut acc = [[_mm512_setzero_ps(); N]; R];
                for c2 in 0..pairs {
                    // SAFETY: c2 < pairs: the line holds 16·N pairs (checked above).
                    let kv: [$k; N] = std::array::from_fn(|t| unsafe {
                        $prep(_mm512_loadu_epi32(kp.add(c2 * keys + 16 * t).cast()))
                    });
                    for (r, acc_r) in acc.iter_mut().enumerate() {
                        // SAFETY: r · pairs + c2 < R · pairs ≤ q.len().
                        let qv = $bcast(unsafe { *q.get_unchecked(r * pairs + c2) });
                        for t in 0..N {
                            acc_r[t] = $dot(acc_r[t], qv, kv[t]);
                        }
                    }
                }
                let scale = _mm512_set1_ps(b.scale);
                for (r, acc_r) in acc.iter().enumerate() {
                    for (t, a) in acc_r.iter().enumerate() {
                        let at = r * keys + j0 + 16 * t;
                        // SAFETY: at + 16 ≤ (r + 1)·keys ≤ scores.len().
                        unsafe {
                            _mm512_storeu_ps(
                                scores[at..at + 16].as_mut_ptr(),
                                _mm512_mul_ps(*a, scale),
                            )
                        };
                    }
                }
            }

            /// # Safety
            /// As `super::values_pairs`, and the CPU has `$features`.
            #[target_feature(enable = $features)]
            pub(in super::super) unsafe fn values(
                b: &PairBlock,
                p: &[u32],
                vp: &[u32],
                out: &[*mut f32],
            ) {
                assert!(out.len() == b.rows && p.len() >= b.rows * b.key_pairs);
                let mut c0 = 0;
                while c0 < b.dim {
                    let n = (b.dim - c0).div_ceil(16).min(4);
                    // SAFETY: forwarded; vector t < n starts at a column c0 + 16t < dim.
                    unsafe {
                        match (b.rows, n) {
                            (1, 1) => values_part::<1, 1>(b, p, vp, out, c0),
                            (1, 2) => values_part::<1, 2>(b, p, vp, out, c0),
                            (1, 3) => values_part::<1, 3>(b, p, vp, out, c0),
                            (1, _) => values_part::<1, 4>(b, p, vp, out, c0),
                            (2, 1) => values_part::<2, 1>(b, p, vp, out, c0),
                            (2, 2) => values_part::<2, 2>(b, p, vp, out, c0),
                            (2, 3) => values_part::<2, 3>(b, p, vp, out, c0),
                            (2, _) => values_part::<2, 4>(b, p, vp, out, c0),
                            (3, 1) => values_part::<3, 1>(b, p, vp, out, c0),
                            (3, 2) => values_part::<3, 2>(b, p, vp, out, c0),
                            (3, 3) => values_part::<3, 3>(b, p, vp, out, c0),
                            (3, _) => values_part::<3, 4>(b, p, vp, out, c0),
                            (_, 1) => values_part::<4, 1>(b, p, vp, out, c0),
                            (_, 2) => values_part::<4, 2>(b, p, vp, out, c0),
                            (_, 3) => values_part::<4, 3>(b, p, vp, out, c0),
                            (_, _) => values_part::<4, 4>(b, p, vp, out, c0),
                        }
                    }
                    c0 += 16 * n;
                }
            }

            /// Columns `c0 .. min(c0 + 16·N, dim)` of `R` rows: `Σ_j2` over the pairs in order.
            #[inline]
            #[target_feature(enable = $features)]
            unsafe fn values_part<const R: usize, const N: usize>(
                b: &PairBlock,
                p: &[u32],
                vp: &[u32],
                out: &[*mut f32],
                c0: usize,
            ) {
                let (d, key_pairs) = (b.dim, b.key_pairs);
                let width = (d - c0).min(16 * N);
                let masks: [__mmask16; N] = std::array::from_fn(|t| {
                    let left = width.saturating_sub(16 * t);
                    if left >= 16 { !0 } else { (1u16 << left) - 1 }
                });
                let mut acc = [[_mm512_setzero_ps(); N]; R];
                if key_pairs > 0 {
                    // Bounds checked once: the last line read ends at (key_pairs − 1)·d + c0 + width.
                    assert!((key_pairs - 1) * d + c0 + width <= vp.len());
                    assert!(p.len() >= R * key_pairs);
                    let v0 = vp[c0..].as_ptr();
                    for j2 in 0..key_pairs {
                        // SAFETY: line j2 holds `width` pairs from column c0 (checked above);
                        // masked lanes are not read.
                        let vv: [$k; N] = std::array::from_fn(|t| unsafe {
                            $prep(_mm512_maskz_loadu_epi32(
                                masks[t],
                                v0.add(j2 * d + 16 * t).cast(),
                            ))
                        });
                        for (r, acc_r) in acc.iter_mut().enumerate() {
                            // SAFETY: r · key_pairs + j2 < R · key_pairs ≤ p.len().
                            let pv = $bcast(unsafe { *p.get_unchecked(r * key_pairs + j2) });
                            for t in 0..N {
                                acc_r[t] = $dot(acc_r[t], pv, vv[t]);
                            }
                        }
                    }
                }
                for (acc_r, &row) in acc.iter().zip(out) {
                    let row = row.wrapping_add(c0);
                    for (t, a) in acc_r.iter().enumerate() {
                        // SAFETY: unmasked lanes are columns < d of an output row (contract).
                        unsafe { _mm512_mask_storeu_ps(row.wrapping_add(16 * t), masks[t], *a) };
                    }
                }
            }
        }
    };
}

pair_kernels!(
    native,
    "avx512f,avx512bf16",
    __m512i,
    prep_native,
    bcast_native,
    dot_native
);
pair_kernels!(
    emulated,
    "avx512f",
    (__m512, __m512),
    prep_emulated,
    bcast_emulated,
    dot_emulated
);
