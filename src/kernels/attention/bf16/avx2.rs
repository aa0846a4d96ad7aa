//! The bf16 path's AVX2 kernels (`mod.rs` says what they compute): rounding, and the pair
//! kernels with two FMAs per pair (the bits of `vdpbf16ps`).

use std::arch::x86_64::*;

use super::{FLUSH_BELOW, PairBlock, Rows, round_interleave_tail, round_pairs_tail};

/// 8 floats rounded as `bf16::round`, each in the low half of its 32-bit lane.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn round8(x: __m256) -> __m256i {
    let b = _mm256_castps_si256(x);
    let high = _mm256_srli_epi32::<16>(b);
    let lsb = _mm256_and_si256(high, _mm256_set1_epi32(1));
    let bias = _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7fff));
    let rounded = _mm256_srli_epi32::<16>(_mm256_add_epi32(b, bias));
    // |x| as bits is below 2^31: signed compares order it.
    let abs = _mm256_and_si256(b, _mm256_set1_epi32(0x7fff_ffff));
    let small = _mm256_cmpgt_epi32(_mm256_set1_epi32(FLUSH_BELOW.to_bits() as i32), abs);
    let nan = _mm256_cmpgt_epi32(abs, _mm256_set1_epi32(0x7f80_0000));
    let sign = _mm256_and_si256(high, _mm256_set1_epi32(0x8000));
    let quiet = _mm256_or_si256(high, _mm256_set1_epi32(0x40));
    _mm256_blendv_epi8(_mm256_blendv_epi8(rounded, sign, small), quiet, nan)
}

/// `bf16::round_rows`, 8 floats (4 pairs) per step.
///
/// # Safety
/// The CPU must support avx2 and fma; `dst` holds `(rows − 1)·dst_stride + ⌈len / 2⌉` pairs.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn round_rows(src: Rows, dst: &mut [u32], dst_stride: usize) {
    let whole = src.len / 8 * 8;
    for r in 0..src.rows {
        let (row, out) = (
            src.row(r),
            &mut dst[r * dst_stride..r * dst_stride + src.len.div_ceil(2)],
        );
        for i in (0..whole).step_by(8) {
            // SAFETY: floats i .. i + 8 of `row` and pairs i/2 .. i/2 + 4 of `out` exist.
            unsafe {
                let x = round8(_mm256_loadu_ps(row[i..].as_ptr()));
                // Lanes 0..4 and 4..8 as u16 in qwords 0 and 2, then those qwords side by side.
                let packed = _mm256_permute4x64_epi64::<0b1000>(_mm256_packus_epi32(x, x));
                _mm_storeu_si128(
                    out[i / 2..].as_mut_ptr().cast(),
                    _mm256_castsi256_si128(packed),
                );
            }
        }
        round_pairs_tail(row, out, whole);
    }
}

/// `bf16::interleave_rows`, 8 columns per step.
///
/// # Safety
/// The CPU must support avx2 and fma; `dst` holds `⌈rows / 2⌉ · len` pairs.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn interleave_rows(src: Rows, dst: &mut [u32]) {
    let (len, whole) = (src.len, src.len / 8 * 8);
    for j2 in 0..src.rows.div_ceil(2) {
        let a = src.row(2 * j2);
        let b = (2 * j2 + 1 < src.rows).then(|| src.row(2 * j2 + 1));
        let out = &mut dst[j2 * len..(j2 + 1) * len];
        for c in (0..whole).step_by(8) {
            // SAFETY: columns c .. c + 8 of `a`, `b` and `out` exist.
            unsafe {
                let lo = round8(_mm256_loadu_ps(a[c..].as_ptr()));
                let hi = match b {
                    Some(b) => _mm256_slli_epi32::<16>(round8(_mm256_loadu_ps(b[c..].as_ptr()))),
                    None => _mm256_setzero_si256(),
                };
                _mm256_storeu_si256(out[c..].as_mut_ptr().cast(), _mm256_or_si256(lo, hi));
            }
        }
        round_interleave_tail(a, b, out, whole);
    }
}

/// A pair vector split into its (odd, even) elements as floats.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn split(k: __m256i) -> (__m256, __m256) {
    let odd = _mm256_and_si256(k, _mm256_set1_epi32(0xffff_0000_u32 as i32));
    let even = _mm256_slli_epi32::<16>(k);
    (_mm256_castsi256_ps(odd), _mm256_castsi256_ps(even))
}

#[inline]
#[target_feature(enable = "avx2,fma")]
fn bcast(pair: u32) -> (__m256, __m256) {
    (
        _mm256_set1_ps(f32::from_bits(pair & 0xffff_0000)),
        _mm256_set1_ps(f32::from_bits(pair << 16)),
    )
}

/// One `vdpbf16ps` step: the odd elements' product first, then the even ones'.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn dot(acc: __m256, q: (__m256, __m256), k: (__m256, __m256)) -> __m256 {
    _mm256_fmadd_ps(q.1, k.1, _mm256_fmadd_ps(q.0, k.0, acc))
}

/// The block's scores (`bf16::scores_pairs`'s order), 16 keys (two ymm) per pass.
///
/// # Safety
/// The CPU must support avx2 and fma; the buffers have the lengths [`PairBlock`] describes.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn scores_pairs(b: &PairBlock, q: &[u32], kp: &[u32], scores: &mut [f32]) {
    if b.pairs == 0 {
        scores[..b.rows * b.keys].fill(0.0);
        return;
    }
    for j0 in (0..b.keys).step_by(16) {
        // SAFETY: forwarded; keys j0 .. j0 + 16 ≤ keys (a multiple of 16).
        unsafe {
            match b.rows {
                1 => scores_pass::<1>(b, q, kp, scores, j0),
                2 => scores_pass::<2>(b, q, kp, scores, j0),
                3 => scores_pass::<3>(b, q, kp, scores, j0),
                _ => scores_pass::<4>(b, q, kp, scores, j0),
            }
        }
    }
}

/// Keys `j0 .. j0 + 16` of `R` rows.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn scores_pass<const R: usize>(
    b: &PairBlock,
    q: &[u32],
    kp: &[u32],
    scores: &mut [f32],
    j0: usize,
) {
    let (keys, pairs) = (b.keys, b.pairs);
    // Bounds checked once: the last line read ends at (pairs − 1)·keys + j0 + 16.
    assert!((pairs - 1) * keys + j0 + 16 <= kp.len() && q.len() >= R * pairs);
    assert!(scores.len() >= R * keys);
    let kp = kp[j0..].as_ptr();
    let mut acc = [[_mm256_setzero_ps(); 2]; R];
    for c2 in 0..pairs {
        // SAFETY: c2 < pairs: the line holds 16 pairs (checked above).
        let kv: [(__m256, __m256); 2] = std::array::from_fn(|t| unsafe {
            split(_mm256_loadu_si256(kp.add(c2 * keys + 8 * t).cast()))
        });
        for (r, acc_r) in acc.iter_mut().enumerate() {
            // SAFETY: r · pairs + c2 < R · pairs ≤ q.len().
            let qv = bcast(unsafe { *q.get_unchecked(r * pairs + c2) });
            for t in 0..2 {
                acc_r[t] = dot(acc_r[t], qv, kv[t]);
            }
        }
    }
    let scale = _mm256_set1_ps(b.scale);
    for (r, acc_r) in acc.iter().enumerate() {
        for (t, a) in acc_r.iter().enumerate() {
            let at = r * keys + j0 + 8 * t;
            // SAFETY: at + 8 ≤ (r + 1)·keys ≤ scores.len().
            unsafe { _mm256_storeu_ps(scores[at..at + 8].as_mut_ptr(), _mm256_mul_ps(*a, scale)) };
        }
    }
}

/// The block's `P V` (`bf16::values_pairs`'s order), 16 columns (two ymm) per pass.
///
/// # Safety
/// The CPU must support avx2 and fma; the buffers have the lengths [`PairBlock`] describes; each
/// `out` pointer is valid for `dim` writes and exclusive to this call.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn values_pairs(b: &PairBlock, p: &[u32], vp: &[u32], out: &[*mut f32]) {
    assert!(out.len() == b.rows && p.len() >= b.rows * b.key_pairs);
    for c0 in (0..b.dim).step_by(16) {
        // SAFETY: forwarded; c0 < dim.
        unsafe {
            match b.rows {
                1 => values_pass::<1>(b, p, vp, out, c0),
                2 => values_pass::<2>(b, p, vp, out, c0),
                3 => values_pass::<3>(b, p, vp, out, c0),
                _ => values_pass::<4>(b, p, vp, out, c0),
            }
        }
    }
}

/// Columns `c0 .. min(c0 + 16, dim)` of `R` rows.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn values_pass<const R: usize>(
    b: &PairBlock,
    p: &[u32],
    vp: &[u32],
    out: &[*mut f32],
    c0: usize,
) {
    let (d, key_pairs) = (b.dim, b.key_pairs);
    let width = (d - c0).min(16);
    let masks: [__m256i; 2] = std::array::from_fn(|t| {
        let left = width.saturating_sub(8 * t).min(8) as i32;
        _mm256_cmpgt_epi32(
            _mm256_set1_epi32(left),
            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
        )
    });
    let mut acc = [[_mm256_setzero_ps(); 2]; R];
    if key_pairs > 0 {
        // Bounds checked once: the last line read ends at (key_pairs − 1)·d + c0 + width.
        assert!((key_pairs - 1) * d + c0 + width <= vp.len() && p.len() >= R * key_pairs);
        let v0 = vp[c0..].as_ptr();
        for j2 in 0..key_pairs {
            // SAFETY: line j2 holds `width` pairs from column c0 (checked above); masked lanes
            // are not read.
            let vv: [(__m256, __m256); 2] = std::array::from_fn(|t| unsafe {
                split(_mm256_maskload_epi32(
                    v0.add(j2 * d + 8 * t).cast(),
                    masks[t],
                ))
            });
            for (r, acc_r) in acc.iter_mut().enumerate() {
                // SAFETY: r · key_pairs + j2 < R · key_pairs ≤ p.len().
                let pv = bcast(unsafe { *p.get_unchecked(r * key_pairs + j2) });
                for t in 0..2 {
                    acc_r[t] = dot(acc_r[t], pv, vv[t]);
                }
            }
        }
    }
    for (acc_r, &row) in acc.iter().zip(out) {
        let row = row.wrapping_add(c0);
        for (t, a) in acc_r.iter().enumerate() {
            // SAFETY: unmasked lanes are columns < d of an output row (contract).
            unsafe { _mm256_maskstore_ps(row.wrapping_add(8 * t), masks[t], *a) };
        }
    }
}
