//! The bf16 path's AVX-512 kernels (`mod.rs` says what they compute): rounding, and the pair
//! kernels twice over, with `vdpbf16ps` and, where AVX512_BF16 is absent, with two FMAs per pair
//! (the same bits).

use std::arch::x86_64::*;

use super::{FLUSH_BELOW, PairBlock, Rows, round_interleave_tail, round_pairs_tail};

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
    is_x86_feature_detected!("avx512bf16") && !crate::kernels::attention::bf16_emulation_forced()
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

            use super::super::PairBlock;
            use super::{$bcast, $dot, $prep};

            /// # Safety
            /// As `super::scores_pairs`, and the CPU has `$features`.
            #[target_feature(enable = $features)]
            pub(super) unsafe fn scores(b: &PairBlock, q: &[u32], kp: &[u32], scores: &mut [f32]) {
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
            pub(super) unsafe fn values(b: &PairBlock, p: &[u32], vp: &[u32], out: &[*mut f32]) {
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
                let masks = crate::kernels::attention::avx512::column_masks::<N>(width);
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
