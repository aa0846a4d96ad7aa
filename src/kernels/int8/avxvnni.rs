//! AVX-VNNI path: VEX-encoded 256-bit `vpdpbusd`, 2 rows × 48 columns per tile (12 of the 16 ymm
//! registers as accumulators). Shares the 256-bit epilogue with the AVX2 path.

use std::arch::x86_64::*;
use std::ops::Range;

use super::avx2::{VECS, store_row};
use super::{GEMV_MAX_ROWS, Job, accumulate_quads, quad_weights};

/// Computes output rows `rows` × the columns of `panels`.
///
/// # Safety
/// The CPU must support avxvnni, avx2 and fma; `job.out` must be valid for writes of `rows` ×
/// those columns, and no other thread may access them meanwhile.
#[target_feature(enable = "avxvnni,avx2,fma")]
pub(crate) unsafe fn run(job: &Job, rows: Range<usize>, panels: Range<usize>) {
    let streaming = rows.len() <= GEMV_MAX_ROWS;
    for panel in panels {
        let mut m = rows.start;
        while m < rows.end {
            // SAFETY: rows m..m + 2 (or m) and the panel belong to this unit; features and
            // output per the contract.
            unsafe {
                match (rows.end - m >= 2, streaming) {
                    (true, true) => tile::<2, true>(job, m, panel),
                    (true, false) => tile::<2, false>(job, m, panel),
                    (false, true) => tile::<1, true>(job, m, panel),
                    (false, false) => tile::<1, false>(job, m, panel),
                }
            }
            m += 2;
        }
    }
}

/// # Safety
/// As [`run`], for rows `m0..m0 + ROWS` and panel `panel`.
#[inline]
#[target_feature(enable = "avxvnni,avx2,fma")]
unsafe fn tile<const ROWS: usize, const PREFETCH: bool>(job: &Job, m0: usize, panel: usize) {
    let t = job.tile_operands(m0, ROWS, panel);
    // SAFETY: `compensation` holds NR = 6 × 8 i32.
    let init: [__m256i; VECS] = std::array::from_fn(|j| unsafe {
        _mm256_loadu_si256(t.compensation[8 * j..].as_ptr().cast())
    });
    let mut acc = [init; ROWS];
    // A single row gives only 6 dependent chains: split even/odd K-quads to hide the latency.
    let mut acc_odd = [[_mm256_setzero_si256(); VECS]; ROWS];
    let split_k = ROWS == 1;
    accumulate_quads!(t, split_k, step::<ROWS, PREFETCH>, acc, acc_odd);
    for (r, (row, odd)) in acc.iter_mut().zip(&acc_odd).enumerate() {
        if split_k {
            for (v, o) in row.iter_mut().zip(odd) {
                *v = _mm256_add_epi32(*v, *o);
            }
        }
        // SAFETY: row m0 + r and the panel belong to this unit per the contract.
        unsafe { store_row(job, m0 + r, panel, *row) };
    }
}

/// One K-quad for `ROWS` rows: each 48-column weight vector is loaded once and used by all rows.
///
/// # Safety
/// `a` must be readable for `ROWS` rows of `a_stride ≥ 4·quad + 4` bytes, `b` for
/// `(quad + 1) · QUAD_BYTES` bytes; the CPU must support avxvnni and avx2.
#[inline]
#[target_feature(enable = "avxvnni,avx2,fma")]
unsafe fn step<const ROWS: usize, const PREFETCH: bool>(
    acc: &mut [[__m256i; VECS]; ROWS],
    a: *const u8,
    a_stride: usize,
    b: *const i8,
    quad: usize,
) {
    // SAFETY: in bounds per the contract; prefetches never fault and use wrapping_add.
    unsafe {
        let bq = quad_weights::<PREFETCH>(b, quad);
        let x: [__m256i; ROWS] = std::array::from_fn(|r| {
            _mm256_set1_epi32(
                a.add(r * a_stride + 4 * quad)
                    .cast::<i32>()
                    .read_unaligned(),
            )
        });
        for j in 0..VECS {
            let w = _mm256_loadu_si256(bq.add(32 * j).cast());
            for (acc_row, &xr) in acc.iter_mut().zip(&x) {
                acc_row[j] = _mm256_dpbusd_avx_epi32(acc_row[j], xr, w);
            }
        }
    }
}
