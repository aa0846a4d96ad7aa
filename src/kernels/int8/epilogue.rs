//! The fused epilogue: s32 accumulator → f32 → scale → bias → activation → residual.
//!
//! Every ISA path must produce bit-identical f32 values, so the vector versions below repeat the
//! scalar sequence of IEEE operations exactly: plain multiplies and adds where the scalar code
//! has them, fused multiply-adds (`f32::mul_add`, always a single rounding) where it has those,
//! and selects instead of branches. Nothing here relies on the compiler contracting or
//! reassociating floating-point math (Rust never does).

use std::f32::consts::{FRAC_1_SQRT_2, LN_2, LOG2_E};

use super::{Job, Out};

/// Element-wise function applied after the bias.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Activation {
    #[default]
    None,
    /// `max(y, 0)`.
    Relu,
    /// Exact (erf-based) GELU, as PyTorch's `gelu(approximate='none')`.
    Gelu,
}

/// What happens to each accumulator on its way out; all parts are optional.
#[derive(Clone, Copy, Debug, Default)]
pub struct Epilogue<'a> {
    /// Added after scaling, length N.
    pub bias: Option<&'a [f32]>,
    pub activation: Activation,
    /// Added last, M×N with the same row stride as the output.
    pub residual: Option<&'a [f32]>,
}

/// The epilogue for one element; the vector paths replicate exactly this sequence.
#[inline(always)]
pub(crate) fn epilogue_value(
    acc: i32,
    row_scale: f32,
    col_scale: f32,
    bias: Option<f32>,
    activation: Activation,
    residual: Option<f32>,
) -> f32 {
    let mut y = acc as f32 * (row_scale * col_scale);
    if let Some(b) = bias {
        y += b;
    }
    y = activate(y, activation);
    if let Some(r) = residual {
        y += r;
    }
    y
}

/// The activation of one element, as every vector path computes it.
#[inline(always)]
pub(crate) fn activate(y: f32, activation: Activation) -> f32 {
    match activation {
        Activation::None => y,
        // Written as a select so that it matches `maxps(y, 0)` for −0.0 and NaN as well.
        Activation::Relu => {
            if y > 0.0 {
                y
            } else {
                0.0
            }
        }
        Activation::Gelu => gelu(y),
    }
}

/// Writes `acc[i]` (through the epilogue, for an f32 output) to row `m`, column `col0 + i`.
///
/// # Safety
/// `job.out` must be valid for writes of row `m`, columns `col0..col0 + acc.len()` (all `< N`),
/// and no other thread may access those elements meanwhile.
#[inline(always)]
pub(crate) unsafe fn store_scalar(job: &Job, m: usize, col0: usize, acc: &[i32]) {
    let at = m * job.out_stride + col0;
    match job.out {
        Out::I32(out) => {
            for (i, &v) in acc.iter().enumerate() {
                // SAFETY: in bounds and exclusive per this function's contract.
                unsafe { out.add(at + i).write(v) };
            }
        }
        Out::F32(out) => {
            let row_scale = job.a.row_scales()[m];
            let col_scales = &job.w.col_scales()[col0..col0 + acc.len()];
            let epi = &job.epilogue;
            for (i, (&v, &col_scale)) in acc.iter().zip(col_scales).enumerate() {
                let y = epilogue_value(
                    v,
                    row_scale,
                    col_scale,
                    epi.bias.map(|b| b[col0 + i]),
                    epi.activation,
                    epi.residual.map(|r| r[at + i]),
                );
                // SAFETY: in bounds and exclusive per this function's contract.
                unsafe { out.add(at + i).write(y) };
            }
        }
    }
}

/// Exact GELU, `x · Φ(x) = 0.5 · x · (1 + erf(x / √2))`; absolute error < 1e-6 for |x| ≤ 10.
#[inline(always)]
pub fn gelu(x: f32) -> f32 {
    let e = erf(x * FRAC_1_SQRT_2);
    (x * 0.5) * (1.0 + e)
}

// erf after N. Juffa's faithfully rounded `erff` (max error < 1 ulp): an odd polynomial up to
// |x| = 0.9277, beyond it `1 − exp(p(|x|))`. Clamping |x| at 4 keeps `exp` in range; erf(4)
// already rounds to 1.0 in f32.
const ERF_SPLIT: f32 = 475.0 / 512.0;
const ERF_CLAMP: f32 = 4.0;
const ERF_S0: f32 = -5.967_617e-4;
const ERF_S1: f32 = 4.991_194_2e-3;
const ERF_S2: f32 = -2.676_813_5e-2;
const ERF_S3: f32 = 1.128_199_25e-1;
const ERF_S4: f32 = -3.761_253_4e-1;
const ERF_S5: f32 = 1.283_791_7e-1;
const ERF_L0: f32 = -1.728_534_7e-5;
const ERF_L1: f32 = 3.831_971_3e-4;
const ERF_L2: f32 = -3.883_964_4e-3;
const ERF_L3: f32 = 2.425_462_2e-2;
const ERF_L4: f32 = -1.067_778_8e-1;
const ERF_L5: f32 = -6.348_467e-1;
const ERF_L6: f32 = -1.287_175_1e-1;

// exp for arguments in [-18, 0]: round-to-nearest range reduction by ln 2 (the 1.5·2^23 trick,
// exact in IEEE arithmetic), Cephes `expf` polynomial, scale by 2^k built from the exponent bits.
const ROUND_MAGIC: f32 = 12_582_912.0;
const LN2_HI: f32 = LN_2;
const LN2_LO: f32 = -1.904_654_2e-9;
const EXP_P0: f32 = 1.987_569_1e-4;
const EXP_P1: f32 = 1.398_199_9e-3;
const EXP_P2: f32 = 8.333_452e-3;
const EXP_P3: f32 = 4.166_579_6e-2;
const EXP_P4: f32 = 1.666_666_6e-1;
const EXP_P5: f32 = 0.5;

/// The error function, max error ≈ 1 ulp; identical bits to the vector versions.
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    let t = x.abs();
    if t > ERF_SPLIT {
        let t = t.min(ERF_CLAMP);
        let s = t * t;
        let r = ERF_L0.mul_add(t, ERF_L1);
        let u = ERF_L2.mul_add(t, ERF_L3);
        let r = r.mul_add(s, u);
        let r = r.mul_add(t, ERF_L4);
        let r = r.mul_add(t, ERF_L5);
        let r = r.mul_add(t, ERF_L6);
        let r = r.mul_add(t, -t);
        (1.0 - exp_for_erf(r)).copysign(x)
    } else {
        let s = x * x;
        let r = ERF_S0.mul_add(s, ERF_S1);
        let r = r.mul_add(s, ERF_S2);
        let r = r.mul_add(s, ERF_S3);
        let r = r.mul_add(s, ERF_S4);
        let r = r.mul_add(s, ERF_S5);
        r.mul_add(x, x)
    }
}

#[inline(always)]
fn exp_for_erf(x: f32) -> f32 {
    let k = x.mul_add(LOG2_E, ROUND_MAGIC) - ROUND_MAGIC;
    let f = k.mul_add(-LN2_HI, x);
    let f = k.mul_add(-LN2_LO, f);
    let p = EXP_P0.mul_add(f, EXP_P1);
    let p = p.mul_add(f, EXP_P2);
    let p = p.mul_add(f, EXP_P3);
    let p = p.mul_add(f, EXP_P4);
    let p = p.mul_add(f, EXP_P5);
    let p = p.mul_add(f * f, f) + 1.0;
    p * f32::from_bits(((k as i32 + 127) as u32) << 23)
}

#[cfg(target_arch = "x86_64")]
pub(crate) use simd::*;

#[cfg(target_arch = "x86_64")]
mod simd {
    use std::arch::x86_64::*;

    use super::*;

    /// [`gelu`] on 16 lanes.
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub(crate) fn gelu_avx512(x: __m512) -> __m512 {
        let e = erf_avx512(_mm512_mul_ps(x, _mm512_set1_ps(FRAC_1_SQRT_2)));
        let half_x = _mm512_mul_ps(x, _mm512_set1_ps(0.5));
        _mm512_mul_ps(half_x, _mm512_add_ps(_mm512_set1_ps(1.0), e))
    }

    /// [`erf`] on 16 lanes: both branches, then a select.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn erf_avx512(x: __m512) -> __m512 {
        let fma = |a, b, c| _mm512_fmadd_ps(a, b, c);
        let splat = _mm512_set1_ps;
        let t = _mm512_abs_ps(x);

        let s = _mm512_mul_ps(x, x);
        let r = fma(splat(ERF_S0), s, splat(ERF_S1));
        let r = fma(r, s, splat(ERF_S2));
        let r = fma(r, s, splat(ERF_S3));
        let r = fma(r, s, splat(ERF_S4));
        let r = fma(r, s, splat(ERF_S5));
        let small = fma(r, x, x);

        let tc = _mm512_min_ps(t, splat(ERF_CLAMP));
        let sc = _mm512_mul_ps(tc, tc);
        let r = fma(splat(ERF_L0), tc, splat(ERF_L1));
        let u = fma(splat(ERF_L2), tc, splat(ERF_L3));
        let r = fma(r, sc, u);
        let r = fma(r, tc, splat(ERF_L4));
        let r = fma(r, tc, splat(ERF_L5));
        let r = fma(r, tc, splat(ERF_L6));
        let r = fma(r, tc, _mm512_sub_ps(_mm512_setzero_ps(), tc));
        let magnitude = _mm512_sub_ps(splat(1.0), exp_for_erf_avx512(r));
        // copysign: the magnitude is positive, so OR-ing in the sign bit of x is exact.
        let sign = _mm512_and_si512(_mm512_castps_si512(x), _mm512_set1_epi32(i32::MIN));
        let large = _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(magnitude), sign));

        let use_large = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(t, splat(ERF_SPLIT));
        _mm512_mask_blend_ps(use_large, small, large)
    }

    #[inline]
    #[target_feature(enable = "avx512f")]
    fn exp_for_erf_avx512(x: __m512) -> __m512 {
        let fma = |a, b, c| _mm512_fmadd_ps(a, b, c);
        let splat = _mm512_set1_ps;
        let magic = splat(ROUND_MAGIC);
        let k = _mm512_sub_ps(fma(x, splat(LOG2_E), magic), magic);
        let f = fma(k, splat(-LN2_HI), x);
        let f = fma(k, splat(-LN2_LO), f);
        let p = fma(splat(EXP_P0), f, splat(EXP_P1));
        let p = fma(p, f, splat(EXP_P2));
        let p = fma(p, f, splat(EXP_P3));
        let p = fma(p, f, splat(EXP_P4));
        let p = fma(p, f, splat(EXP_P5));
        let p = _mm512_add_ps(fma(p, _mm512_mul_ps(f, f), f), splat(1.0));
        // k is integral, so the conversion is exact in any rounding mode.
        let exponent = _mm512_add_epi32(_mm512_cvtps_epi32(k), _mm512_set1_epi32(127));
        _mm512_mul_ps(p, _mm512_castsi512_ps(_mm512_slli_epi32::<23>(exponent)))
    }

    /// [`gelu`] on 8 lanes.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub(crate) fn gelu_avx2(x: __m256) -> __m256 {
        let e = erf_avx2(_mm256_mul_ps(x, _mm256_set1_ps(FRAC_1_SQRT_2)));
        let half_x = _mm256_mul_ps(x, _mm256_set1_ps(0.5));
        _mm256_mul_ps(half_x, _mm256_add_ps(_mm256_set1_ps(1.0), e))
    }

    /// [`erf`] on 8 lanes: both branches, then a select.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn erf_avx2(x: __m256) -> __m256 {
        let fma = |a, b, c| _mm256_fmadd_ps(a, b, c);
        let splat = _mm256_set1_ps;
        let sign_bit = splat(-0.0);
        let t = _mm256_andnot_ps(sign_bit, x);

        let s = _mm256_mul_ps(x, x);
        let r = fma(splat(ERF_S0), s, splat(ERF_S1));
        let r = fma(r, s, splat(ERF_S2));
        let r = fma(r, s, splat(ERF_S3));
        let r = fma(r, s, splat(ERF_S4));
        let r = fma(r, s, splat(ERF_S5));
        let small = fma(r, x, x);

        let tc = _mm256_min_ps(t, splat(ERF_CLAMP));
        let sc = _mm256_mul_ps(tc, tc);
        let r = fma(splat(ERF_L0), tc, splat(ERF_L1));
        let u = fma(splat(ERF_L2), tc, splat(ERF_L3));
        let r = fma(r, sc, u);
        let r = fma(r, tc, splat(ERF_L4));
        let r = fma(r, tc, splat(ERF_L5));
        let r = fma(r, tc, splat(ERF_L6));
        let r = fma(r, tc, _mm256_sub_ps(_mm256_setzero_ps(), tc));
        let magnitude = _mm256_sub_ps(splat(1.0), exp_for_erf_avx2(r));
        let large = _mm256_or_ps(magnitude, _mm256_and_ps(x, sign_bit));

        let use_large = _mm256_cmp_ps::<_CMP_GT_OQ>(t, splat(ERF_SPLIT));
        _mm256_blendv_ps(small, large, use_large)
    }

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn exp_for_erf_avx2(x: __m256) -> __m256 {
        let fma = |a, b, c| _mm256_fmadd_ps(a, b, c);
        let splat = _mm256_set1_ps;
        let magic = splat(ROUND_MAGIC);
        let k = _mm256_sub_ps(fma(x, splat(LOG2_E), magic), magic);
        let f = fma(k, splat(-LN2_HI), x);
        let f = fma(k, splat(-LN2_LO), f);
        let p = fma(splat(EXP_P0), f, splat(EXP_P1));
        let p = fma(p, f, splat(EXP_P2));
        let p = fma(p, f, splat(EXP_P3));
        let p = fma(p, f, splat(EXP_P4));
        let p = fma(p, f, splat(EXP_P5));
        let p = _mm256_add_ps(fma(p, _mm256_mul_ps(f, f), f), splat(1.0));
        let exponent = _mm256_add_epi32(_mm256_cvtps_epi32(k), _mm256_set1_epi32(127));
        _mm256_mul_ps(p, _mm256_castsi256_ps(_mm256_slli_epi32::<23>(exponent)))
    }
}
