//! AVX-512 VNNI path: `vpdpbusd` on zmm, an 8×48 GEMM tile (24 accumulators) and a 1–4 row GEMV
//! tile that streams the weights with software prefetch; the epilogue runs in registers.

use std::arch::x86_64::*;
use std::ops::Range;

use super::{GEMV_MAX_ROWS, Job, MR, NR, Out, QUAD_BYTES, accumulate_quads, quad_weights};
use crate::kernels::simd::avx512::activate_all;

/// zmm vectors per panel row (16 i32 lanes each).
const VECS: usize = NR / 16;

/// Computes output rows `rows` × the columns of `panels`.
///
/// # Safety
/// The CPU must support avx512f, avx512bw and avx512vnni; `job.out` must be valid for writes of
/// `rows` × those columns, and no other thread may access them meanwhile.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
pub(crate) unsafe fn run(job: &Job, rows: Range<usize>, panels: Range<usize>) {
    let m0 = rows.start;
    if rows.len() <= GEMV_MAX_ROWS {
        // Batch-1 decoding: each weight byte is used by at most 4 rows, so the loop is bound by
        // memory bandwidth; walk the panels in address order and prefetch ahead.
        for panel in panels {
            // SAFETY: features and output per this function's contract; the tile covers exactly
            // `rows` and a panel inside `panels`.
            unsafe {
                match rows.len() {
                    1 => tile::<1, true>(job, m0, panel, None),
                    2 => tile::<2, true>(job, m0, panel, None),
                    3 => tile::<3, true>(job, m0, panel, None),
                    4 => tile::<4, true>(job, m0, panel, None),
                    _ => {}
                }
            }
        }
        return;
    }
    // One pass over a panel (≤ 147 KiB at K = 3072) serves all rows of the block from L1/L2.
    // The first tile of each panel prefetches ahead in it; the later tiles of a panel share out
    // the next panel's lines between them (tile i of the n − 1 later ones takes every
    // (n − 1)-th K-quad from i), so that a panel streamed from memory arrives while the one
    // before is computed instead of in a burst at its first tile, which has too few misses in
    // flight to keep up (`gemm_int8`'s Opus-MT output layer: 58k columns, 30 MB of weights).
    let tiles = rows.len().div_ceil(MR);
    for panel in panels.clone() {
        let next = if panel + 1 < panels.end {
            job.w.panel_ptr(panel + 1)
        } else {
            std::ptr::null()
        };
        let mut m = m0;
        let mut index = 0;
        while m < rows.end {
            let share = match index {
                0 => None,
                _ if next.is_null() => None,
                i => Some(NextShare {
                    panel: next,
                    every: tiles - 1,
                    first: i - 1,
                }),
            };
            // SAFETY: features and output per this function's contract; rows m..m + ROWS lie
            // inside `rows` and the panel inside `panels`.
            unsafe {
                match ((rows.end - m).min(MR), index == 0) {
                    (8, true) => tile::<8, true>(job, m, panel, share),
                    (8, false) => tile::<8, false>(job, m, panel, share),
                    (7, _) => tile::<7, false>(job, m, panel, share),
                    (6, _) => tile::<6, false>(job, m, panel, share),
                    (5, _) => tile::<5, false>(job, m, panel, share),
                    (4, _) => tile::<4, false>(job, m, panel, share),
                    (3, _) => tile::<3, false>(job, m, panel, share),
                    (2, _) => tile::<2, false>(job, m, panel, share),
                    _ => tile::<1, false>(job, m, panel, share),
                }
            }
            m += MR;
            index += 1;
        }
    }
}

/// A later tile's share of the next panel to prefetch: K-quads `first`, `first + every`, ...
#[derive(Clone, Copy)]
struct NextShare {
    panel: *const i8,
    every: usize,
    first: usize,
}

/// Accumulates rows `m0..m0 + ROWS` against one panel and writes them out.
///
/// # Safety
/// As [`run`], for rows `m0..m0 + ROWS` and panel `panel`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn tile<const ROWS: usize, const PREFETCH: bool>(
    job: &Job,
    m0: usize,
    panel: usize,
    share: Option<NextShare>,
) {
    let t = job.tile_operands(m0, ROWS, panel);
    // SAFETY: `compensation` holds NR = 3 × 16 i32.
    let init: [__m512i; VECS] = std::array::from_fn(|j| unsafe {
        _mm512_loadu_si512(t.compensation[16 * j..].as_ptr().cast())
    });
    let mut acc = [init; ROWS];
    // With 1–2 rows, 3–6 dependent `vpdpbusd` chains cannot cover its 4–5 cycle latency at two
    // per cycle; even and odd K-quads go to separate accumulators.
    let mut acc_odd = [[_mm512_setzero_si512(); VECS]; ROWS];
    let split_k = ROWS <= 2;
    match share {
        Some(share) => {
            let mut countdown = share.first;
            let prefetch = |quad: usize| {
                if countdown == 0 {
                    countdown = share.every;
                    for line in 0..QUAD_BYTES / 64 {
                        // A prefetch never faults; the address lies inside the next panel.
                        _mm_prefetch::<_MM_HINT_T0>(
                            share.panel.wrapping_add(quad * QUAD_BYTES + 64 * line),
                        );
                    }
                }
                countdown -= 1;
            };
            accumulate_quads!(t, split_k, step::<ROWS, false>, acc, acc_odd, prefetch);
        }
        None => accumulate_quads!(t, split_k, step::<ROWS, PREFETCH>, acc, acc_odd),
    }
    if split_k {
        for (row, odd) in acc.iter_mut().zip(&acc_odd) {
            for (v, o) in row.iter_mut().zip(odd) {
                *v = _mm512_add_epi32(*v, *o);
            }
        }
    }
    // By value (a `move` closure): a reference would let the accumulator array escape, and LLVM
    // then writes all 24 registers back to the stack on every K step.
    // SAFETY: forwarded contract of this function.
    unsafe { store::<ROWS>(job, m0, panel, move |r, j| acc[r][j]) };
}

/// One K-quad: per row, broadcast its 4 activation bytes and `vpdpbusd` them against 48 columns.
///
/// # Safety
/// `a` must be readable for `ROWS` rows of `a_stride` bytes with `4·quad + 4 ≤ a_stride`, and
/// `b` for `(quad + 1) · QUAD_BYTES` bytes; the CPU must support avx512f/bw/vnni.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn step<const ROWS: usize, const PREFETCH: bool>(
    acc: &mut [[__m512i; VECS]; ROWS],
    a: *const u8,
    a_stride: usize,
    b: *const i8,
    quad: usize,
) {
    // SAFETY: within the panel per the contract; the prefetch address may lie past the end of
    // the weights, which is harmless (prefetches never fault) and computed with wrapping_add.
    unsafe {
        let bq = quad_weights::<PREFETCH>(b, quad);
        let w: [__m512i; VECS] = std::array::from_fn(|j| _mm512_loadu_si512(bq.add(64 * j).cast()));
        for (r, acc_row) in acc.iter_mut().enumerate() {
            let x4 = a
                .add(r * a_stride + 4 * quad)
                .cast::<i32>()
                .read_unaligned();
            let x = _mm512_set1_epi32(x4);
            for (v, wv) in acc_row.iter_mut().zip(&w) {
                *v = _mm512_dpbusd_epi32(*v, x, *wv);
            }
        }
    }
}

/// Writes the accumulators of rows `m0..m0 + ROWS` × panel `panel`, through the epilogue for an
/// f32 output; columns past N are masked off.
///
/// # Safety
/// As [`tile`]. Also the AMX path's epilogue (`amx.rs`), so every AVX-512 output runs this code.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
pub(super) unsafe fn store<const ROWS: usize>(
    job: &Job,
    m0: usize,
    panel: usize,
    acc: impl Fn(usize, usize) -> __m512i,
) {
    let n = job.w.n();
    let stride = job.out_stride;
    for j in 0..VECS {
        let col = panel * NR + 16 * j;
        if col >= n {
            break;
        }
        let mask: __mmask16 = if n - col >= 16 {
            !0
        } else {
            (1 << (n - col)) - 1
        };
        match job.out {
            Out::I32(out) => {
                for r in 0..ROWS {
                    // SAFETY: lanes up to column N of an owned row; masked lanes are not written.
                    unsafe {
                        _mm512_mask_storeu_epi32(
                            out.add((m0 + r) * stride + col).cast(),
                            mask,
                            acc(r, j),
                        )
                    };
                }
            }
            Out::F32(out) | Out::F32Add(out) => {
                let epi = &job.epilogue;
                let residual = job.residual_ptr();
                // SAFETY: the padded scales hold NR values per panel.
                let col_scale =
                    unsafe { _mm512_loadu_ps(job.w.panel_col_scales(panel)[16 * j..].as_ptr()) };
                // SAFETY: col < N = bias.len(); masked-off lanes are not read.
                let bias = epi
                    .bias
                    .map(|b| unsafe { _mm512_maskz_loadu_ps(mask, b.as_ptr().add(col)) });
                let mut y = [_mm512_setzero_ps(); ROWS];
                for (r, y) in y.iter_mut().enumerate() {
                    let scale =
                        _mm512_mul_ps(_mm512_set1_ps(job.a.row_scales()[m0 + r]), col_scale);
                    *y = _mm512_mul_ps(_mm512_cvtepi32_ps(acc(r, j)), scale);
                    if let Some(bias) = bias {
                        *y = _mm512_add_ps(*y, bias);
                    }
                }
                // SAFETY: this path runs with the vector width's features.
                unsafe { activate_all(&mut y, epi.activation) };
                for (r, &y) in y.iter().enumerate() {
                    let at = (m0 + r) * stride + col;
                    // SAFETY: `gemm` checked that residual and out cover M×N at this stride;
                    // masked-off lanes are neither read nor written.
                    unsafe {
                        let y = match residual {
                            Some(residual) => {
                                _mm512_add_ps(y, _mm512_maskz_loadu_ps(mask, residual.add(at)))
                            }
                            None => y,
                        };
                        _mm512_mask_storeu_ps(out.add(at), mask, y);
                    }
                }
            }
        }
    }
}
