//! AVX2 path (no VNNI): `vpmaddubsw` + `vpmaddwd`, one row × 48 columns per tile.
//!
//! `vpmaddubsw` adds two u8·s8 products into a saturating s16, so its operands must keep every
//! pair sum in range. With the signed activation `a = x − 128` and `n = −1` where `a < 0` (else
//! 0), `a·w = |a| · (w XOR n) + |a|·[a < 0]`: for `a < 0`, `w XOR −1 = −w − 1`. The u8 operand
//! `|a|` is at most 128 and `w XOR n` any s8, so a pair sum lies in [2·128·(−128), 2·128·127] =
//! [−32768, 32512]: exact for every code, −128 included. The second term does not depend on the
//! weights: each row's `Σ_k |a_k|·[a_k < 0]` is the accumulators' start value.
//!
//! Why XOR and not `vpsignb` (`|a| · sign(a)·w`, the previous route): on Zen 3 `vpsignb` issues
//! to the same two pipes as `vpmaddubsw` and `vpmaddwd` (3 multiply-pipe µops per 32 products),
//! `vpxor` to any of the four (2 multiply-pipe µops). `|a|` and the masks are computed once per
//! row of a work unit, not once per panel. A tile is one row: its 6 accumulators, 2 broadcast
//! operands and the weights fit in the 16 ymm registers, where 2 rows spilled accumulators to
//! the stack (and 2 rows in passes of part of a panel measured slower still). The sums equal
//! the VNNI path's bit for bit (wrapping i32 arithmetic is a ring).
//!
//! Also home of the 256-bit epilogue shared with the AVX-VNNI path.

use std::arch::x86_64::*;
use std::cell::Cell;
use std::ops::Range;

use super::store::store_scalar;
use super::{GEMV_MAX_ROWS, Job, NR, Out, quad_weights};
use crate::kernels::epilogue::Activation;
use crate::kernels::simd::avx2::{activate, gelu_n};

/// ymm vectors per panel row (8 i32 lanes each).
pub(super) const VECS: usize = NR / 8;

/// Most K-quads per block: 64 quads × 192 bytes = 12 KiB of a panel stay in L1 while every row
/// of the unit passes over them (a whole panel, 36 KiB at K = 768, would be re-read from L2 by
/// each row; measured +5–10 % on BERT-base layers).
const K_BLOCK_QUADS: usize = 64;

/// A work unit's rows split into the operands of the XOR route.
#[derive(Default)]
struct SplitRows {
    /// Per row, `k_bytes` of `|a|` then `k_bytes` of the sign masks (0xFF where `a < 0`).
    bytes: Vec<u8>,
    /// Per row, `Σ_k |a_k|·[a_k < 0]`.
    start: Vec<i32>,
    /// Per row, the accumulators between K blocks.
    partial: Vec<[__m256i; VECS]>,
}

thread_local! {
    static SPLIT_ROWS: Cell<SplitRows> = Cell::new(SplitRows::default());
}

/// Computes output rows `rows` × the columns of `panels`.
///
/// # Safety
/// The CPU must support avx2 and fma; `job.out` must be valid for writes of `rows` × those
/// columns, and no other thread may access them meanwhile.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn run(job: &Job, rows: Range<usize>, panels: Range<usize>) {
    let k_bytes = 4 * job.w.k_quads();
    let a_stride = job.a.row_stride();
    assert!(rows.end <= job.a.m() && k_bytes <= a_stride);
    // Taken out of the thread-local for the duration of the call (a unit never nests another
    // GEMM), so the buffers are reused without allocation once grown.
    let mut split = SPLIT_ROWS.take();
    split.bytes.resize(rows.len() * 2 * k_bytes, 0);
    split.start.resize(rows.len(), 0);
    for (i, m) in rows.clone().enumerate() {
        let x = &job.a.data()[m * a_stride..m * a_stride + k_bytes];
        let (mag, neg) = split.bytes[i * 2 * k_bytes..(i + 1) * 2 * k_bytes].split_at_mut(k_bytes);
        // SAFETY: avx2 per the contract; the three slices hold k_bytes each.
        split.start[i] = unsafe { split_row(x, mag, neg) };
    }
    // Few rows: the weights stream from memory once, so prefetch them.
    let streaming = rows.len() <= GEMV_MAX_ROWS;
    let k_quads = k_bytes / 4;
    // Equal K blocks of at most K_BLOCK_QUADS (no short tail block).
    let block = k_quads
        .div_ceil(k_quads.div_ceil(K_BLOCK_QUADS).max(1))
        .max(1);
    split
        .partial
        .resize(rows.len(), [_mm256_setzero_si256(); VECS]);
    for panel in panels {
        let b = job.w.panel_ptr(panel);
        let mut quads = 0..block.min(k_quads);
        // At least one pass, so that K = 0 still writes its outputs.
        loop {
            for i in 0..rows.len() {
                let row = &split.bytes[i * 2 * k_bytes..(i + 1) * 2 * k_bytes];
                let (mag, neg) = (row.as_ptr(), row[k_bytes..].as_ptr());
                if quads.end == k_quads {
                    // SAFETY: a prefetch never faults.
                    unsafe { prefetch_epilogue_lines(job, rows.start + i, panel) };
                }
                let mut acc = if quads.start == 0 {
                    [_mm256_set1_epi32(split.start[i]); VECS]
                } else {
                    split.partial[i]
                };
                // SAFETY: quads end at or before the panel's k_quads; the row's halves hold
                // k_bytes = 4·k_quads each; avx2 per the contract.
                unsafe {
                    if streaming {
                        row_quads::<true>(b, mag, neg, quads.clone(), &mut acc)
                    } else {
                        row_quads::<false>(b, mag, neg, quads.clone(), &mut acc)
                    }
                }
                if quads.end == k_quads {
                    // SAFETY: row rows.start + i and the panel belong to this unit.
                    unsafe { store_row(job, rows.start + i, panel, acc) };
                } else {
                    split.partial[i] = acc;
                }
            }
            if quads.end == k_quads {
                break;
            }
            quads = quads.end..(quads.end + block).min(k_quads);
        }
    }
    SPLIT_ROWS.set(split);
}

/// Asks for the cache lines the epilogue of row `m` × `panel` reads (the residual) and writes
/// (the output) while the row's last K block runs: the epilogue otherwise waits on them (`perf
/// annotate`: a fifth of its time on the residual's load at MiniLM batch 32).
///
/// # Safety
/// None beyond the features: prefetches never fault, and the addresses are only computed
/// (`wrapping_add`), never dereferenced.
#[inline(always)]
unsafe fn prefetch_epilogue_lines(job: &Job, m: usize, panel: usize) {
    let at = m * job.out_stride + panel * NR;
    let lines = |p: *const f32| {
        for line in 0..NR * 4 / 64 {
            // SAFETY: a prefetch never faults.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(at + 16 * line).cast()) };
        }
    };
    match job.out {
        Out::I32(out) => lines(out.cast_const().cast()),
        Out::F32(out) | Out::F32Add(out) => {
            lines(out.cast_const());
            if let Some(r) = job.epilogue.residual {
                lines(r.as_ptr());
            }
        }
    }
}

/// Writes `|a|` and the sign masks of one row of activation bytes `x` (`a = x − 128`) and
/// returns `Σ |a|·[a < 0]`.
///
/// # Safety
/// The CPU must support avx2; `mag` and `neg` must be as long as `x`.
#[target_feature(enable = "avx2,fma")]
unsafe fn split_row(x: &[u8], mag: &mut [u8], neg: &mut [u8]) -> i32 {
    assert!(mag.len() == x.len() && neg.len() == x.len());
    let offset = _mm256_set1_epi8(i8::MIN);
    let zero = _mm256_setzero_si256();
    let mut sums = zero;
    let mut i = 0;
    while i + 32 <= x.len() {
        // SAFETY: i + 32 ≤ len of all three slices.
        unsafe {
            let v = _mm256_loadu_si256(x.as_ptr().add(i).cast());
            let signed = _mm256_xor_si256(v, offset);
            _mm256_storeu_si256(mag.as_mut_ptr().add(i).cast(), _mm256_abs_epi8(signed));
            _mm256_storeu_si256(
                neg.as_mut_ptr().add(i).cast(),
                _mm256_cmpgt_epi8(zero, signed),
            );
            // max(128 − x, 0) = |a| where a < 0, else 0; summed in 64-bit lanes.
            sums = _mm256_add_epi64(sums, _mm256_sad_epu8(_mm256_subs_epu8(offset, v), zero));
        }
        i += 32;
    }
    let mut lanes = [0i64; 4];
    // SAFETY: `lanes` is 32 writable bytes.
    unsafe { _mm256_storeu_si256(lanes.as_mut_ptr().cast(), sums) };
    let mut total: i64 = lanes.iter().sum();
    for ((&x, mag), neg) in x[i..].iter().zip(&mut mag[i..]).zip(&mut neg[i..]) {
        let a = i32::from(x) - 128;
        *mag = a.unsigned_abs() as u8;
        *neg = if a < 0 { 0xff } else { 0 };
        total += i64::from(128u8.saturating_sub(x));
    }
    // The accumulators wrap (i32 addition is a ring), so only the value mod 2³² matters.
    total as i32
}

/// Adds K-quads `quads` of one row (operands `mag`, `neg`) × the panel at `b` into `acc`.
///
/// # Safety
/// `quads.end` ≤ the panel's k_quads and ≤ the operands' length / 4; avx2.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn row_quads<const PREFETCH: bool>(
    b: *const i8,
    mag: *const u8,
    neg: *const u8,
    quads: Range<usize>,
    acc: &mut [__m256i; VECS],
) {
    let ones = _mm256_set1_epi16(1);
    let mut regs = *acc;
    for quad in quads {
        // SAFETY: per the contract.
        unsafe {
            let bq = quad_weights::<PREFETCH>(b, quad);
            let lane =
                |p: *const u8| _mm256_set1_epi32(p.add(4 * quad).cast::<i32>().read_unaligned());
            let (mag, neg) = (lane(mag), lane(neg));
            for (j, acc) in regs.iter_mut().enumerate() {
                let w = _mm256_loadu_si256(bq.add(32 * j).cast());
                let pairs = _mm256_maddubs_epi16(mag, _mm256_xor_si256(w, neg));
                *acc = _mm256_add_epi32(*acc, _mm256_madd_epi16(pairs, ones));
            }
        }
    }
    *acc = regs;
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
    let col0 = panel * NR;
    let at_row = m * job.out_stride + col0;
    // Vectors of 8 columns wholly below N; a ragged rest goes through the scalar epilogue.
    let full = (n.saturating_sub(col0) / 8).min(VECS);
    match job.out {
        Out::I32(out) => {
            for (j, &acc) in acc[..full].iter().enumerate() {
                // SAFETY: columns col0 + 8j .. + 8 ≤ N of row m, per the contract.
                unsafe { _mm256_storeu_si256(out.add(at_row + 8 * j).cast(), acc) };
            }
        }
        Out::F32(out) | Out::F32Add(out) => {
            let epi = &job.epilogue;
            let row_scale = _mm256_set1_ps(job.a.row_scales()[m]);
            let col_scales = job.w.panel_col_scales(panel);
            let mut y = [_mm256_setzero_ps(); VECS];
            for (j, (y, &acc)) in y.iter_mut().zip(&acc).take(full).enumerate() {
                // SAFETY: the padded scales hold NR values per panel.
                let col_scale = unsafe { _mm256_loadu_ps(col_scales[8 * j..].as_ptr()) };
                *y = _mm256_mul_ps(_mm256_cvtepi32_ps(acc), _mm256_mul_ps(row_scale, col_scale));
                if let Some(bias) = epi.bias {
                    // SAFETY: bias holds N ≥ col0 + 8j + 8 values.
                    *y = _mm256_add_ps(*y, unsafe {
                        _mm256_loadu_ps(bias[col0 + 8 * j..].as_ptr())
                    });
                }
            }
            // SAFETY: this path runs with the vector width's features.
            unsafe {
                if full == VECS && matches!(epi.activation, Activation::Gelu) {
                    // The whole panel at once: its GELUs' dependency chains overlap (measured
                    // by `cargo bench --bench gemm_int8`'s epilogue table).
                    gelu_n(&mut y);
                } else {
                    y[..full]
                        .iter_mut()
                        .for_each(|y| *y = activate(*y, epi.activation));
                }
            }
            let residual = job.residual_ptr();
            for (j, &y) in y[..full].iter().enumerate() {
                let at = at_row + 8 * j;
                // SAFETY: `gemm` checked that residual and out cover M×N at this stride.
                unsafe {
                    let y = match residual {
                        Some(residual) => _mm256_add_ps(y, _mm256_loadu_ps(residual.add(at))),
                        None => y,
                    };
                    _mm256_storeu_ps(out.add(at), y);
                }
            }
        }
    }
    let col = col0 + 8 * full;
    if full < VECS && col < n {
        let mut lanes = [0i32; 8];
        // SAFETY: `lanes` is 32 writable bytes.
        unsafe { _mm256_storeu_si256(lanes.as_mut_ptr().cast(), acc[full]) };
        // SAFETY: columns col..n (fewer than 8) of row m, per the contract.
        unsafe { store_scalar(job, m, col, &lanes[..n - col]) };
    }
}
