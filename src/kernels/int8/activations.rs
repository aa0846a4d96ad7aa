//! Dynamic per-row (per-token) activation quantization: f32 → symmetric s8 → +128 → u8.

use rayon::prelude::*;

use super::Isa;
use crate::kernels::ops::{norm_rows, rows_per_task};

/// Below this many values quantization runs on the calling thread.
const PARALLEL_MIN_VALUES: usize = 1 << 16;

/// Zero point of the unsigned activation bytes: `u8 = s8 + 128`.
const SHIFT: i32 = 128;

/// Quantized activations: `m` rows of u8 (`s8 + 128`), each padded with the zero point to a
/// multiple of 4 bytes (one `vpdpbusd` lane), plus one scale per row.
///
/// Reuse one value across calls: [`quantize_activations`] only grows its buffers.
#[derive(Clone, Debug, Default)]
pub struct QuantizedActivations {
    m: usize,
    k: usize,
    row_stride: usize,
    data: Vec<u8>,
    row_scales: Vec<f32>,
}

impl QuantizedActivations {
    pub fn new() -> Self {
        Self::default()
    }

    /// Rows (tokens).
    pub fn m(&self) -> usize {
        self.m
    }

    /// Values per row before padding.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Bytes between consecutive rows (K rounded up to a multiple of 4).
    pub fn row_stride(&self) -> usize {
        self.row_stride
    }

    /// `max|x| / 127` of each row: `x ≈ (u8 − 128) · scale`.
    pub fn row_scales(&self) -> &[f32] {
        &self.row_scales[..self.m]
    }

    /// Row `i` including its padding (`row_stride` bytes).
    pub fn row(&self, i: usize) -> &[u8] {
        &self.data[i * self.row_stride..(i + 1) * self.row_stride]
    }

    /// All rows, `m × row_stride` bytes.
    pub(crate) fn data(&self) -> &[u8] {
        &self.data[..self.m * self.row_stride]
    }

    fn reshape(&mut self, m: usize, k: usize) {
        self.m = m;
        self.k = k;
        self.row_stride = k.div_ceil(4) * 4;
        let len = m * self.row_stride;
        if self.data.len() < len {
            self.data.resize(len, SHIFT as u8);
        }
        if self.row_scales.len() < m {
            self.row_scales.resize(m, 0.0);
        }
    }
}

/// Quantizes the row-major `x` (m × k) into `out`, one scale per row: `scale = max|x| / 127`,
/// `q = round_half_away(x · 127 / max|x|)` clamped to ±127, stored as `q + 128`.
/// An all-zero row gets scale 0. Every `isa` gives identical bytes and scales; the choice only
/// affects speed (panics if the CPU lacks `isa`). Inputs must be finite.
pub fn quantize_activations(
    isa: Isa,
    x: &[f32],
    m: usize,
    k: usize,
    out: &mut QuantizedActivations,
) {
    if let Err(e) = isa.ensure_available() {
        panic!("{e}");
    }
    assert_eq!(x.len(), m * k, "activations must be M×K = {m}×{k}");
    out.reshape(m, k);
    let stride = out.row_stride;
    if m == 0 {
        return;
    }
    let quantize_row = isa.kernels().quantize_row;
    let quantize = |((q_row, scale), x_row): ((&mut [u8], &mut f32), &[f32])| {
        // SAFETY: the CPU supports `isa` (checked above); q_row is a full padded row, at least
        // as long as x_row.
        *scale = unsafe { quantize_row(x_row, q_row) };
    };
    let (data, scales) = (&mut out.data[..m * stride], &mut out.row_scales[..m]);
    if k == 0 {
        scales.fill(0.0);
    } else if m * k >= PARALLEL_MIN_VALUES && m > 1 && crate::kernels::parallel::pool_threads() > 1
    {
        data.par_chunks_exact_mut(stride)
            .zip(scales.par_iter_mut())
            .zip(x.par_chunks_exact(k))
            .for_each(quantize);
    } else {
        data.chunks_exact_mut(stride)
            .zip(scales.iter_mut())
            .zip(x.chunks_exact(k))
            .for_each(quantize);
    }
}

/// [`crate::kernels::ops::layer_norm`] of the row-major `x` (m × `dim`) in place, and the
/// [`quantize_activations`] of the normalised rows into `out`, in one pass: each row is quantized
/// right after it is normalised, while it is still in L1. Done as two passes, the quantization
/// re-read rows the norm had already pushed out of cache (12 % of MiniLM at batch 32 on AMX).
/// The bytes, scales and normalised values are exactly those of the two passes.
#[allow(clippy::too_many_arguments)]
pub fn layer_norm_quantize(
    isa: Isa,
    x: &mut [f32],
    dim: usize,
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
    out: &mut QuantizedActivations,
) {
    if let Err(e) = isa.ensure_available() {
        panic!("{e}");
    }
    assert!(
        dim > 0 && x.len().is_multiple_of(dim),
        "layer_norm_quantize: {} values are not rows of {dim}",
        x.len()
    );
    let m = x.len() / dim;
    out.reshape(m, dim);
    let stride = out.row_stride;
    let quantize_row = isa.kernels().quantize_row;
    let task = |((x_rows, q_rows), scales): ((&mut [f32], &mut [u8]), &mut [f32])| {
        for ((x_row, q_row), scale) in x_rows
            .chunks_exact_mut(dim)
            .zip(q_rows.chunks_exact_mut(stride))
            .zip(scales.iter_mut())
        {
            norm_rows(x_row, dim, gamma, beta, eps);
            // SAFETY: the CPU supports `isa` (checked above); q_row is a full padded row, at
            // least as long as x_row.
            *scale = unsafe { quantize_row(x_row, q_row) };
        }
    };
    let (data, scales) = (&mut out.data[..m * stride], &mut out.row_scales[..m]);
    if let Some(rows_per_task) = rows_per_task(x.len(), dim) {
        x.par_chunks_mut(rows_per_task * dim)
            .zip(data.par_chunks_mut(rows_per_task * stride))
            .zip(scales.par_chunks_mut(rows_per_task))
            .for_each(task);
    } else {
        task(((x, data), scales));
    }
}

/// Quantizes one row; returns its scale. Pads `q_row` beyond `x_row.len()` with the zero point.
/// Reference semantics, used by the scalar path; the vector versions below compute exactly the
/// same bytes (every step is an exact IEEE operation or a comparison).
pub(crate) fn quantize_row_portable(x_row: &[f32], q_row: &mut [u8]) -> f32 {
    let amax = f32::from_bits(x_row.iter().fold(0, |m, v| m.max(v.to_bits() & ABS_MASK)));
    let (inv, scale) = inverse_and_scale(amax);
    let (q_values, q_pad) = q_row.split_at_mut(x_row.len());
    for (q, &v) in q_values.iter_mut().zip(x_row) {
        let r = (v * inv).round().clamp(-127.0, 127.0);
        *q = (r as i32 + SHIFT) as u8;
    }
    q_pad.fill(SHIFT as u8);
    scale
}

/// Clears the sign bit: for finite values the bit patterns of |x| order like the values, so the
/// row maximum is an integer max (which vectorizes, unlike a NaN-aware f32 max).
const ABS_MASK: u32 = 0x7fff_ffff;

/// `(127 / amax, amax / 127)`; an all-zero row (or a subnormal maximum whose inverse overflows)
/// quantizes to 0 with scale 0.
fn inverse_and_scale(amax: f32) -> (f32, f32) {
    let inv = 127.0 / amax;
    if amax > 0.0 && inv.is_finite() {
        (inv, amax / 127.0)
    } else {
        (0.0, 0.0)
    }
}

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// # Safety
/// The CPU must support avx512f and avx512bw; `q_row.len() >= x_row.len()`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
pub(crate) unsafe fn quantize_row_avx512(x_row: &[f32], q_row: &mut [u8]) -> f32 {
    let len = x_row.len();
    let lane_mask = |i: usize| -> __mmask16 {
        if len - i >= 16 {
            !0
        } else {
            (1u16 << (len - i)) - 1
        }
    };
    let x = x_row.as_ptr();
    let mut amax = _mm512_setzero_si512();
    for i in (0..len).step_by(16) {
        // SAFETY: lanes at or past `len` are masked off and not read.
        let v = unsafe { _mm512_maskz_loadu_epi32(lane_mask(i), x.add(i).cast()) };
        amax = _mm512_max_epu32(
            amax,
            _mm512_and_si512(v, _mm512_set1_epi32(ABS_MASK as i32)),
        );
    }
    let (inv, scale) = inverse_and_scale(f32::from_bits(_mm512_reduce_max_epu32(amax)));
    let inv = _mm512_set1_ps(inv);
    let q = q_row.as_mut_ptr();
    for i in (0..len).step_by(16) {
        let mask = lane_mask(i);
        // SAFETY: masked-off lanes are neither read nor written; q_row is at least as long.
        unsafe {
            let v = _mm512_mul_ps(_mm512_maskz_loadu_ps(mask, x.add(i)), inv);
            // round half away from zero = trunc, plus ±1 where the dropped fraction is ≥ 0.5
            // (v − trunc(v) is exact).
            let t = _mm512_roundscale_ps::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(v);
            let away = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(
                _mm512_abs_ps(_mm512_sub_ps(v, t)),
                _mm512_set1_ps(0.5),
            );
            let sign = _mm512_and_si512(_mm512_castps_si512(v), _mm512_set1_epi32(i32::MIN));
            let one = _mm512_castsi512_ps(_mm512_or_si512(
                _mm512_castps_si512(_mm512_set1_ps(1.0)),
                sign,
            ));
            let r = _mm512_mask_add_ps(t, away, t, one);
            let r = _mm512_min_ps(
                _mm512_max_ps(r, _mm512_set1_ps(-127.0)),
                _mm512_set1_ps(127.0),
            );
            let b = _mm512_add_epi32(_mm512_cvttps_epi32(r), _mm512_set1_epi32(SHIFT));
            _mm512_mask_cvtepi32_storeu_epi8(q.add(i).cast(), mask, b);
        }
    }
    q_row[len..].fill(SHIFT as u8);
    scale
}

/// # Safety
/// The CPU must support avx2; `q_row.len() >= x_row.len()`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn quantize_row_avx2(x_row: &[f32], q_row: &mut [u8]) -> f32 {
    let len = x_row.len();
    let body = len / 8 * 8;
    let x = x_row.as_ptr();
    let mut amax = _mm256_setzero_si256();
    for i in (0..body).step_by(8) {
        // SAFETY: i + 8 <= len.
        let v = unsafe { _mm256_loadu_si256(x.add(i).cast()) };
        amax = _mm256_max_epu32(
            amax,
            _mm256_and_si256(v, _mm256_set1_epi32(ABS_MASK as i32)),
        );
    }
    let mut lanes = [0u32; 8];
    // SAFETY: `lanes` is 32 writable bytes.
    unsafe { _mm256_storeu_si256(lanes.as_mut_ptr().cast(), amax) };
    let amax_bits = x_row[body..]
        .iter()
        .fold(lanes.into_iter().max().unwrap_or(0), |m, v| {
            m.max(v.to_bits() & ABS_MASK)
        });
    let (inv_s, scale) = inverse_and_scale(f32::from_bits(amax_bits));
    let inv = _mm256_set1_ps(inv_s);
    let q = q_row.as_mut_ptr();
    for i in (0..body).step_by(8) {
        // SAFETY: i + 8 <= len <= q_row.len().
        unsafe {
            let v = _mm256_mul_ps(_mm256_loadu_ps(x.add(i)), inv);
            // The same exact round-half-away as the AVX-512 version.
            let t = _mm256_round_ps::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(v);
            let sign = _mm256_and_ps(v, _mm256_set1_ps(-0.0));
            let d = _mm256_andnot_ps(_mm256_set1_ps(-0.0), _mm256_sub_ps(v, t));
            let away = _mm256_cmp_ps::<_CMP_GE_OQ>(d, _mm256_set1_ps(0.5));
            let one = _mm256_or_ps(_mm256_set1_ps(1.0), sign);
            let r = _mm256_add_ps(t, _mm256_and_ps(away, one));
            let r = _mm256_min_ps(
                _mm256_max_ps(r, _mm256_set1_ps(-127.0)),
                _mm256_set1_ps(127.0),
            );
            let b = _mm256_add_epi32(_mm256_cvttps_epi32(r), _mm256_set1_epi32(SHIFT));
            // 8 × i32 in 0..=255 → 8 bytes: pack within each 128-bit half, then take the low
            // 4 bytes of both halves.
            let words = _mm256_packus_epi32(b, b);
            let bytes = _mm256_packus_epi16(words, words);
            q.add(i)
                .cast::<i32>()
                .write_unaligned(_mm256_extract_epi32::<0>(bytes));
            q.add(i + 4)
                .cast::<i32>()
                .write_unaligned(_mm256_extract_epi32::<4>(bytes));
        }
    }
    for (qv, &v) in q_row[body..len].iter_mut().zip(&x_row[body..]) {
        let r = (v * inv_s).round().clamp(-127.0, 127.0);
        *qv = (r as i32 + SHIFT) as u8;
    }
    q_row[len..].fill(SHIFT as u8);
    scale
}
