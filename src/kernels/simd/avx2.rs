//! The shared math on 8 f32 lanes (AVX2 + FMA): `vector_math!` over these primitives repeats the
//! scalar sequences of `simd/mod.rs` exactly.

use std::arch::x86_64::*;

use super::*;
use crate::kernels::epilogue::Activation;

vector_math!(
    __m256,
    "avx2,fma",
    8,
    _mm256_set1_ps,
    _mm256_fmadd_ps,
    _mm256_mul_ps,
    _mm256_div_ps,
    _mm256_add_ps,
    _mm256_sub_ps,
    _mm256_min_ps,
    _mm256_max_ps,
    _mm256_setzero_ps,
    _mm256_loadu_ps,
    _mm256_storeu_ps
);

#[inline(always)]
unsafe fn abs(x: __m256) -> __m256 {
    // SAFETY: the caller runs with the width's features.
    unsafe { _mm256_andnot_ps(_mm256_set1_ps(-0.0), x) }
}

/// `magnitude` (non-negative) with the sign bit of `x` ORed in.
#[inline(always)]
unsafe fn with_sign_of(magnitude: __m256, x: __m256) -> __m256 {
    // SAFETY: the caller runs with the width's features.
    unsafe { _mm256_or_ps(magnitude, _mm256_and_ps(x, _mm256_set1_ps(-0.0))) }
}

/// `a > b ? if_gt : otherwise`, per lane (ordered: NaN compares false).
#[inline(always)]
unsafe fn select_gt(a: __m256, b: __m256, if_gt: __m256, otherwise: __m256) -> __m256 {
    // SAFETY: the caller runs with the width's features.
    unsafe { _mm256_blendv_ps(otherwise, if_gt, _mm256_cmp_ps::<_CMP_GT_OQ>(a, b)) }
}

/// 2^k for integral `k`, built from the exponent bits.
#[inline(always)]
unsafe fn pow2(k: __m256) -> __m256 {
    // SAFETY: the caller runs with the width's features.
    unsafe {
        let exponent = _mm256_add_epi32(_mm256_cvtps_epi32(k), _mm256_set1_epi32(127));
        _mm256_castsi256_ps(_mm256_slli_epi32::<23>(exponent))
    }
}
