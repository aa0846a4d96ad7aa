//! The shared math on 16 f32 lanes (AVX-512F): `vector_math!` over these primitives repeats the
//! scalar sequences of `simd/mod.rs` exactly.

use std::arch::x86_64::*;

use super::*;
use crate::kernels::epilogue::Activation;

vector_math!(
    __m512,
    "avx512f",
    16,
    _mm512_set1_ps,
    _mm512_fmadd_ps,
    _mm512_mul_ps,
    _mm512_div_ps,
    _mm512_add_ps,
    _mm512_sub_ps,
    _mm512_min_ps,
    _mm512_max_ps,
    _mm512_setzero_ps,
    _mm512_loadu_ps,
    _mm512_storeu_ps
);

/// Vectors [`activate_all`] puts through one exact GELU together: enough independent chains to
/// keep the FMA pipes busy, few enough that their temporaries (about five vectors each) stay in
/// the 32 registers.
const GELU_GROUP: usize = 4;

/// [`activate`] on every vector of `y`; an exact GELU runs on [`GELU_GROUP`] vectors at a time
/// through [`gelu_n`], so their dependency chains overlap. The same operations per lane, so the
/// same bits as one vector at a time.
///
/// # Safety
/// The CPU must support avx512f.
#[inline(always)]
pub(crate) unsafe fn activate_all(y: &mut [__m512], activation: Activation) {
    // SAFETY: the caller runs with avx512f.
    unsafe {
        if matches!(activation, Activation::Gelu) {
            let mut groups = y.chunks_exact_mut(GELU_GROUP);
            for group in &mut groups {
                let group: &mut [__m512; GELU_GROUP] = group
                    .try_into()
                    .expect("chunks_exact_mut yields whole groups");
                gelu_n(group);
            }
            for v in groups.into_remainder() {
                *v = gelu(*v);
            }
        } else {
            for v in y {
                *v = activate(*v, activation);
            }
        }
    }
}

#[inline(always)]
unsafe fn abs(x: __m512) -> __m512 {
    // SAFETY: the caller runs with the width's features.
    unsafe { _mm512_abs_ps(x) }
}

/// `magnitude` (non-negative) with the sign bit of `x` ORed in.
#[inline(always)]
unsafe fn with_sign_of(magnitude: __m512, x: __m512) -> __m512 {
    // SAFETY: the caller runs with the width's features.
    unsafe {
        let sign = _mm512_and_si512(_mm512_castps_si512(x), _mm512_set1_epi32(i32::MIN));
        _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(magnitude), sign))
    }
}

/// `a > b ? if_gt : otherwise`, per lane (ordered: NaN compares false).
#[inline(always)]
unsafe fn select_gt(a: __m512, b: __m512, if_gt: __m512, otherwise: __m512) -> __m512 {
    // SAFETY: the caller runs with the width's features.
    unsafe { _mm512_mask_blend_ps(_mm512_cmp_ps_mask::<_CMP_GT_OQ>(a, b), otherwise, if_gt) }
}

/// 2^k for integral `k`, built from the exponent bits (the conversion of an integral value is
/// exact in any rounding mode).
#[inline(always)]
unsafe fn pow2(k: __m512) -> __m512 {
    // SAFETY: the caller runs with the width's features.
    unsafe {
        let exponent = _mm512_add_epi32(_mm512_cvtps_epi32(k), _mm512_set1_epi32(127));
        _mm512_castsi512_ps(_mm512_slli_epi32::<23>(exponent))
    }
}

/// Lane i of the result = the sum of the 16 lanes of `v[i]`, in a shuffle tree: halves of
/// vector pairs, then quarters, then pairs of lanes inside each quarter. Per vector that is the
/// order of `attention::reduce_lanes` (lane l += lane l + 8, then + 4, + 2, + 1), so it gives
/// the same bits as reducing each vector alone.
#[inline]
#[target_feature(enable = "avx512f")]
pub(crate) fn reduce16(v: [__m512; 16]) -> __m512 {
    // Level 1: v_i and v_{i+8} → 256-bit halves added; quarters [i, i, i+8, i+8].
    let l1: [__m512; 8] = std::array::from_fn(|i| {
        let lo = _mm512_shuffle_f32x4::<0x44>(v[i], v[i + 8]);
        let hi = _mm512_shuffle_f32x4::<0xEE>(v[i], v[i + 8]);
        _mm512_add_ps(lo, hi)
    });
    // Level 2: quarters of l1_i and l1_{i+4} → [i, i+8, i+4, i+12], 4 lanes each.
    let l2: [__m512; 4] = std::array::from_fn(|i| {
        let lo = _mm512_shuffle_f32x4::<0x88>(l1[i], l1[i + 4]);
        let hi = _mm512_shuffle_f32x4::<0xDD>(l1[i], l1[i + 4]);
        _mm512_add_ps(lo, hi)
    });
    // Level 3: inside each quarter, lanes 0–1 from l2_i, 2–3 from l2_{i+2}.
    let l3: [__m512; 2] = std::array::from_fn(|i| {
        let lo = _mm512_shuffle_ps::<0x44>(l2[i], l2[i + 2]);
        let hi = _mm512_shuffle_ps::<0xEE>(l2[i], l2[i + 2]);
        _mm512_add_ps(lo, hi)
    });
    // Level 4: one lane per vector. Lane 4q + t holds vector base(q) + [0, 2, 1, 3][t], with
    // base = [0, 8, 4, 12][q]; a permutation puts vector i in lane i.
    let lo = _mm512_shuffle_ps::<0x88>(l3[0], l3[1]);
    let hi = _mm512_shuffle_ps::<0xDD>(l3[0], l3[1]);
    let sums = _mm512_add_ps(lo, hi);
    // Lane i of the result comes from the lane that holds vector i.
    let from = _mm512_setr_epi32(0, 2, 1, 3, 8, 10, 9, 11, 4, 6, 5, 7, 12, 14, 13, 15);
    _mm512_permutexvar_ps(from, sums)
}
