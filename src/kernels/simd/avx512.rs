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
