//! AVX2 path (no VNNI): `vpmaddubsw` + `vpmaddwd`, 2 rows × 48 columns per tile.
//!
//! `vpmaddubsw` adds two u8·s8 products into a saturating s16, so the operands must be kept
//! small enough for every pair sum to be exact. The fast route uses the sign trick: with the
//! signed activation `a = x − 128`, `a·w = |a| · (sign(a)·w)` (`vpabsb`, `vpsignb`), and
//! `|a| ≤ 128`, `|w| ≤ 127` bound a pair sum by 2·128·127 = 32512 < 32767. It accumulates
//! `Σ a·w` directly, which already includes the `−128·colsum` correction, so it starts from zero.
//! A code of −128 (never made by the quantizer, accepted by `pack`) would break `|w| ≤ 127`;
//! such matrices take the exact nibble route: x = 16·hi + lo (both ≤ 15), each pair sum ≤
//! 2·15·128, and `Σ lo·w + 16·Σ hi·w` plus the compensation. Both equal the VNNI sum bit for bit
//! (wrapping i32 arithmetic is a ring).
//!
//! Also home of the 256-bit epilogue shared with the AVX-VNNI path.

use std::arch::x86_64::*;
use std::ops::Range;

use super::store::store_scalar;
use super::{GEMV_MAX_ROWS, Job, NR, Out, QUAD_BYTES, quad_weights};
use crate::kernels::simd::avx2::activate;

/// ymm vectors per panel row (8 i32 lanes each).
pub(super) const VECS: usize = NR / 8;

/// Computes output rows `rows` × the columns of `panels`.
///
/// # Safety
/// The CPU must support avx2 and fma; `job.out` must be valid for writes of `rows` × those
/// columns, and no other thread may access them meanwhile.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn run(job: &Job, rows: Range<usize>, panels: Range<usize>) {
    if job.w.has_min_code() {
        for panel in panels {
            for m in rows.clone() {
                // SAFETY: row m and the panel belong to this unit; features per the contract.
                unsafe { nibble_tile(job, m, panel) };
            }
        }
        return;
    }
    // Few rows: the weights stream from memory once, so prefetch them.
    let streaming = rows.len() <= GEMV_MAX_ROWS;
    for panel in panels {
        let mut m = rows.start;
        while m < rows.end {
            // SAFETY: rows m..m + 2 (or m) and the panel belong to this unit; features and
            // output per the contract.
            unsafe {
                match (rows.end - m >= 2, streaming) {
                    (true, true) => sign_tile::<2, true>(job, m, panel),
                    (true, false) => sign_tile::<2, false>(job, m, panel),
                    (false, true) => sign_tile::<1, true>(job, m, panel),
                    (false, false) => sign_tile::<1, false>(job, m, panel),
                }
            }
            m += 2;
        }
    }
}

/// # Safety
/// As [`run`], for rows `m0..m0 + ROWS` and panel `panel`; no weight code may be −128.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn sign_tile<const ROWS: usize, const PREFETCH: bool>(job: &Job, m0: usize, panel: usize) {
    let t = job.tile_operands(m0, ROWS, panel);
    // Each step's chain is one `vpaddd` per accumulator: no second accumulator set is needed to
    // hide latency, even for a single row.
    let mut acc = [[_mm256_setzero_si256(); VECS]; ROWS];
    for quad in 0..t.k_quads {
        // SAFETY: quad < k_quads, so the A reads stay inside the tile's rows (row stride
        // 4·k_quads) and the B reads inside the panel (k_quads × QUAD_BYTES).
        unsafe { sign_step::<ROWS, PREFETCH>(&mut acc, t.a, t.a_stride, t.b, quad) };
    }
    for (r, row) in acc.iter().enumerate() {
        // SAFETY: row m0 + r and the panel belong to this unit per the contract.
        unsafe { store_row(job, m0 + r, panel, *row) };
    }
}

/// One K-quad for `ROWS` rows by the sign trick: each weight vector is loaded once and used by
/// all rows.
///
/// # Safety
/// `a` must be readable for `ROWS` rows of `a_stride ≥ 4·quad + 4` bytes, `b` for
/// `(quad + 1) · QUAD_BYTES` bytes; the CPU must support avx2.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn sign_step<const ROWS: usize, const PREFETCH: bool>(
    acc: &mut [[__m256i; VECS]; ROWS],
    a: *const u8,
    a_stride: usize,
    b: *const i8,
    quad: usize,
) {
    let ones = _mm256_set1_epi16(1);
    let flip = _mm256_set1_epi8(i8::MIN);
    // SAFETY: in bounds per the contract; prefetches never fault and use wrapping_add.
    unsafe {
        let bq = quad_weights::<PREFETCH>(b, quad);
        // The signed activations (x − 128 is x with its top bit flipped) and their magnitudes.
        let signed: [__m256i; ROWS] = std::array::from_fn(|r| {
            let x4 = a
                .add(r * a_stride + 4 * quad)
                .cast::<i32>()
                .read_unaligned();
            _mm256_xor_si256(_mm256_set1_epi32(x4), flip)
        });
        let magnitude: [__m256i; ROWS] = std::array::from_fn(|r| _mm256_abs_epi8(signed[r]));
        for j in 0..VECS {
            let w = _mm256_loadu_si256(bq.add(32 * j).cast());
            for (acc_row, (&mag, &sgn)) in acc.iter_mut().zip(magnitude.iter().zip(&signed)) {
                let pairs = _mm256_maddubs_epi16(mag, _mm256_sign_epi8(w, sgn));
                acc_row[j] = _mm256_add_epi32(acc_row[j], _mm256_madd_epi16(pairs, ones));
            }
        }
    }
}

/// One row × one panel by nibbles, for matrices holding a −128 code.
///
/// # Safety
/// As [`run`], for row `m` and panel `panel`.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn nibble_tile(job: &Job, m: usize, panel: usize) {
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
