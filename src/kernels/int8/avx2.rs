//! AVX2 path (no VNNI): `vpmaddubsw` + `vpmaddwd`, one row × 48 columns per tile.
//!
//! `vpmaddubsw` adds two u8·s8 products into a saturating s16: 255·127·2 > 32767, so full u8
//! activations could clip. The activations are therefore split into their low and high nibbles
//! (x = 16·hi + lo, both ≤ 15): each pair sum is then ≤ 2·15·128 and exact, and
//! `Σ lo·w + 16·Σ hi·w` equals the VNNI sum bit for bit (wrapping i32 arithmetic is a ring).
//!
//! Also home of the 256-bit epilogue shared with the AVX-VNNI path.

use std::arch::x86_64::*;
use std::ops::Range;

use super::store::store_scalar;
use super::{Job, NR, Out};
use crate::kernels::simd::avx2::activate;

/// ymm vectors per panel row (8 i32 lanes each).
pub(super) const VECS: usize = NR / 8;
use super::QUAD_BYTES;

/// Computes output rows `rows` × the columns of `panels`.
///
/// # Safety
/// The CPU must support avx2 and fma; `job.out` must be valid for writes of `rows` × those
/// columns, and no other thread may access them meanwhile.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn run(job: &Job, rows: Range<usize>, panels: Range<usize>) {
    for panel in panels {
        for m in rows.clone() {
            // SAFETY: row m and the panel belong to this unit; features per the contract.
            unsafe { tile(job, m, panel) };
        }
    }
}

/// # Safety
/// As [`run`], for row `m` and panel `panel`.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn tile(job: &Job, m: usize, panel: usize) {
    let t = job.tile_operands(m, 1, panel);
    let (k_quads, a, b) = (t.k_quads, t.a, t.b);
    // SAFETY: `compensation` holds NR = 6 × 8 i32.
    let mut acc: [__m256i; VECS] = std::array::from_fn(|j| unsafe {
        _mm256_loadu_si256(t.compensation[8 * j..].as_ptr().cast())
    });
    let low_nibbles = _mm256_set1_epi8(0x0f);
    let ones = _mm256_set1_epi16(1);
    let sixteens = _mm256_set1_epi16(16);
    for quad in 0..k_quads {
        // SAFETY: quad < k_quads: inside row m (stride 4·k_quads) and inside the panel.
        let (x4, bq) = unsafe {
            (
                a.add(4 * quad).cast::<i32>().read_unaligned(),
                b.add(quad * QUAD_BYTES),
            )
        };
        let x = _mm256_set1_epi32(x4);
        let lo = _mm256_and_si256(x, low_nibbles);
        let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(x), low_nibbles);
        for (j, v) in acc.iter_mut().enumerate() {
            // SAFETY: 32 bytes at offset 32·j < QUAD_BYTES of this quad.
            let w = unsafe { _mm256_loadu_si256(bq.add(32 * j).cast()) };
            let sum_lo = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, w), ones);
            let sum_hi = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, w), sixteens);
            *v = _mm256_add_epi32(*v, _mm256_add_epi32(sum_lo, sum_hi));
        }
    }
    // By value, so that the accumulators never need a home in memory inside the loop.
    // SAFETY: forwarded contract.
    unsafe { store_row(job, m, panel, acc) };
}

/// Writes one row × panel of accumulators, through the epilogue for an f32 output. Full 8-column
/// groups are vectorized; the ragged end of the last panel goes through the scalar epilogue,
/// which computes the same bits.
///
/// # Safety
/// The CPU must support avx2 and fma; `job.out` must be valid for writes of row `m` × the panel's
/// columns below N, and no other thread may access them meanwhile.
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn store_row(job: &Job, m: usize, panel: usize, acc: [__m256i; VECS]) {
    let n = job.w.n();
    let at_row = m * job.out_stride;
    for (j, &acc) in acc.iter().enumerate() {
        let col = panel * NR + 8 * j;
        if col >= n {
            break;
        }
        let at = at_row + col;
        if n - col < 8 {
            let mut lanes = [0i32; 8];
            // SAFETY: `lanes` is 32 writable bytes.
            unsafe { _mm256_storeu_si256(lanes.as_mut_ptr().cast(), acc) };
            // SAFETY: columns col..n of row m, per the contract.
            unsafe { store_scalar(job, m, col, &lanes[..n - col]) };
            break;
        }
        match job.out {
            // SAFETY: columns col..col + 8 ≤ N of row m, per the contract.
            Out::I32(out) => unsafe { _mm256_storeu_si256(out.add(at).cast(), acc) },
            Out::F32(out) | Out::F32Add(out) => {
                let epi = &job.epilogue;
                let residual = job.residual_ptr();
                // SAFETY: the padded scales hold NR values per panel.
                let col_scale =
                    unsafe { _mm256_loadu_ps(job.w.panel_col_scales(panel)[8 * j..].as_ptr()) };
                let scale = _mm256_mul_ps(_mm256_set1_ps(job.a.row_scales()[m]), col_scale);
                let mut y = _mm256_mul_ps(_mm256_cvtepi32_ps(acc), scale);
                if let Some(bias) = epi.bias {
                    // SAFETY: bias holds N ≥ col + 8 values.
                    y = _mm256_add_ps(y, unsafe { _mm256_loadu_ps(bias.as_ptr().add(col)) });
                }
                // SAFETY: this path runs with the vector width's features.
                y = unsafe { activate(y, epi.activation) };
                // SAFETY: `gemm` checked that residual and out cover M×N at this stride.
                unsafe {
                    if let Some(residual) = residual {
                        y = _mm256_add_ps(y, _mm256_loadu_ps(residual.add(at)));
                    }
                    _mm256_storeu_ps(out.add(at), y);
                }
            }
        }
    }
}
