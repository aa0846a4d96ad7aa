//! AVX-512 VNNI path: unsigned codes × signed activations on `vpdpbusd`, 4 column blocks
//! (independent accumulator chains) × up to 4 rows per pass.

use std::arch::x86_64::*;

use super::pack::CacheLine;
use super::{BLOCK, GEMV_MAX_ROWS, TILE_BLOCKS, TileJob, tile_blocks, with_widened_tile};
use crate::kernels::simd::avx512::activate_all;

/// A core alone cannot keep enough DRAM reads in flight (kernels.md §3): request each block's
/// line this far ahead.
const PREFETCH_LINES: usize = 64;

/// Computes every row of the job's tile.
///
/// # Safety
/// The CPU must support avx512f, avx512bw and avx512vnni; `job.out` must be valid for writes of
/// all rows × the tile's columns (`< N`), and no other thread may access them meanwhile.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
pub(crate) unsafe fn tile(job: &TileJob) {
    let w = job.w;
    if job.a.m() > GEMV_MAX_ROWS && w.bits() < 8 {
        let bits = w.bits();
        with_widened_tile(
            job,
            |lines, dst| {
                // SAFETY: features per this function's contract (the closure runs inside it);
                // dst holds one line per 4 k.
                unsafe {
                    match bits {
                        1 => widen::<1>(lines, dst),
                        2 => widen::<2>(lines, dst),
                        4 => widen::<4>(lines, dst),
                        _ => widen6(lines, dst),
                    }
                }
            },
            // SAFETY: as above; output per this function's contract.
            |wide| unsafe { run::<8>(job, wide) },
        );
        return;
    }
    let blocks = tile_blocks(job);
    // SAFETY: features and output per this function's contract.
    unsafe {
        match w.bits() {
            1 => run::<1>(job, &blocks),
            2 => run::<2>(job, &blocks),
            4 => run::<4>(job, &blocks),
            6 => run::<6>(job, &blocks),
            _ => run::<8>(job, &blocks),
        }
    }
}

/// Splits every packed line into `8 / BITS` lines of one byte per code.
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn widen<const BITS: u32>(lines: &[CacheLine], out: &mut [CacheLine]) {
    let per_byte = 8 / BITS as usize;
    assert_eq!(out.len(), lines.len() * per_byte);
    let mask = _mm512_set1_epi8(((1u16 << BITS) - 1) as i8);
    for (line, dst) in lines.iter().zip(out.chunks_exact_mut(per_byte)) {
        // SAFETY: CacheLine is 64 bytes, 64-byte aligned.
        let mut v = unsafe { _mm512_load_si512(line.0.as_ptr().cast()) };
        for d in dst.iter_mut() {
            // SAFETY: as above.
            unsafe { _mm512_store_si512(d.0.as_mut_ptr().cast(), _mm512_and_si512(v, mask)) };
            v = _mm512_srli_epi16::<BITS>(v);
        }
    }
}

/// Splits every 3-line unit of 6-bit codes into 4 lines of bytes.
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn widen6(lines: &[CacheLine], out: &mut [CacheLine]) {
    assert_eq!(out.len() * 3, lines.len() * 4);
    for (src, dst) in lines.chunks_exact(3).zip(out.chunks_exact_mut(4)) {
        // SAFETY: CacheLine is 64 bytes, 64-byte aligned.
        let v = std::array::from_fn(|t| unsafe { _mm512_load_si512(src[t].0.as_ptr().cast()) });
        for (d, u) in dst.iter_mut().zip(decode6(v)) {
            // SAFETY: as above.
            unsafe { _mm512_store_si512(d.0.as_mut_ptr().cast(), u) };
        }
    }
}

/// The four sub-quads of bytes in a 3-line unit of 6-bit codes (`pack.rs`): the low 6 bits of
/// each line, then the top 2 bits of lines 0, 1, 2 as bits 0..1, 2..3, 4..5.
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
fn decode6(v: [__m512i; 3]) -> [__m512i; 4] {
    let low = _mm512_set1_epi8(0x3f);
    let top = _mm512_set1_epi8(0xc0u8 as i8);
    // `a | (b & c)` is truth table 0xf8. Each 16-bit shift moves the gathered bits down by 2
    // within their byte; the next byte's bits 0..1 that it brings in are always zero here.
    let mut t = _mm512_and_si512(v[0], top);
    t = _mm512_ternarylogic_epi32::<0xf8>(_mm512_srli_epi16::<2>(t), v[1], top);
    t = _mm512_ternarylogic_epi32::<0xf8>(_mm512_srli_epi16::<2>(t), v[2], top);
    [
        _mm512_and_si512(v[0], low),
        _mm512_and_si512(v[1], low),
        _mm512_and_si512(v[2], low),
        _mm512_srli_epi16::<2>(t),
    ]
}

#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn run<const BITS: u32>(job: &TileJob, blocks: &[&[CacheLine]; TILE_BLOCKS]) {
    let m = job.a.m();
    let mut r = 0;
    while r < m {
        let rows = (m - r).min(4);
        // SAFETY: features and output per the caller's contract; rows r..r + rows exist.
        unsafe {
            match (rows, BITS == 6) {
                (4, false) => rows_pass::<BITS, 4>(job, blocks, r),
                (3, false) => rows_pass::<BITS, 3>(job, blocks, r),
                (2, false) => rows_pass::<BITS, 2>(job, blocks, r),
                (_, false) => rows_pass::<BITS, 1>(job, blocks, r),
                (4, true) => rows_pass6::<4>(job, blocks, r),
                (3, true) => rows_pass6::<3>(job, blocks, r),
                (2, true) => rows_pass6::<2>(job, blocks, r),
                (_, true) => rows_pass6::<1>(job, blocks, r),
            }
        }
        r += rows;
    }
}

/// Rows `r0..r0 + MR` × the 64 columns of the tile.
// Register tiles are indexed [row][block] on purpose: the loops are fully unrolled.
#[allow(clippy::needless_range_loop)]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn rows_pass<const BITS: u32, const MR: usize>(
    job: &TileJob,
    blocks: &[&[CacheLine]; TILE_BLOCKS],
    r0: usize,
) {
    let (w, a) = (job.w, job.a);
    let per_byte = 8 / BITS as usize;
    let k_per_line = 4 * per_byte;
    let lines_per_group = w.seg() / k_per_line;
    let mask = _mm512_set1_epi8(((1u16 << BITS) - 1) as i8);
    let x: [*const i8; MR] = std::array::from_fn(|r| a.row(r0 + r).as_ptr());
    let n_lines = blocks[0].len();
    let mut facc = [[_mm512_setzero_ps(); TILE_BLOCKS]; MR];
    for g in 0..w.groups() {
        let mut acc = [[_mm512_setzero_si512(); TILE_BLOCKS]; MR];
        for l in g * lines_per_group..(g + 1) * lines_per_group {
            let mut v: [__m512i; TILE_BLOCKS] = std::array::from_fn(|b| {
                if MR == 1 && l + PREFETCH_LINES < n_lines {
                    _mm_prefetch::<_MM_HINT_T0>(blocks[b][l + PREFETCH_LINES].0.as_ptr().cast());
                }
                // SAFETY: CacheLine is 64 bytes, 64-byte aligned.
                unsafe { _mm512_load_si512(blocks[b][l].0.as_ptr().cast()) }
            });
            for j in 0..per_byte {
                let k = l * k_per_line + j * 4;
                // SAFETY: k + 4 ≤ k_total, the length of every activation row.
                let xb: [__m512i; MR] = std::array::from_fn(|r| unsafe {
                    _mm512_set1_epi32(x[r].add(k).cast::<i32>().read_unaligned())
                });
                for b in 0..TILE_BLOCKS {
                    let u = if BITS == 8 {
                        v[b]
                    } else {
                        let u = _mm512_and_si512(v[b], mask);
                        v[b] = _mm512_srli_epi16::<BITS>(v[b]);
                        u
                    };
                    for r in 0..MR {
                        acc[r][b] = _mm512_dpbusd_epi32(acc[r][b], u, xb[r]);
                    }
                }
            }
        }
        add_group(job, g, r0, acc, &mut facc);
    }
    // SAFETY: features and output per this function's contract; rows r0.. exist.
    unsafe { store_rows(job, r0, &facc) };
}

/// [`rows_pass`] for 6-bit codes: 3-line units of 16 k, one block at a time (12 lines of a whole
/// tile would not leave registers for the accumulators).
#[allow(clippy::needless_range_loop)]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn rows_pass6<const MR: usize>(
    job: &TileJob,
    blocks: &[&[CacheLine]; TILE_BLOCKS],
    r0: usize,
) {
    let (w, a) = (job.w, job.a);
    let units_per_group = w.seg() / 16;
    let x: [*const i8; MR] = std::array::from_fn(|r| a.row(r0 + r).as_ptr());
    let n_lines = blocks[0].len();
    let mut facc = [[_mm512_setzero_ps(); TILE_BLOCKS]; MR];
    for g in 0..w.groups() {
        let mut acc = [[_mm512_setzero_si512(); TILE_BLOCKS]; MR];
        for unit in g * units_per_group..(g + 1) * units_per_group {
            let l = unit * 3;
            unrolled!(TILE_BLOCKS, b, {
                let v = std::array::from_fn(|t| {
                    if MR == 1 && l + t + PREFETCH_LINES < n_lines {
                        _mm_prefetch::<_MM_HINT_T0>(
                            blocks[b][l + t + PREFETCH_LINES].0.as_ptr().cast(),
                        );
                    }
                    // SAFETY: CacheLine is 64 bytes, 64-byte aligned.
                    unsafe { _mm512_load_si512(blocks[b][l + t].0.as_ptr().cast()) }
                });
                let u = decode6(v);
                unrolled!(4, j, {
                    let k = unit * 16 + j * 4;
                    for r in 0..MR {
                        // SAFETY: k + 4 ≤ k_total, the length of every activation row.
                        let xb = unsafe {
                            _mm512_set1_epi32(x[r].add(k).cast::<i32>().read_unaligned())
                        };
                        acc[r][b] = _mm512_dpbusd_epi32(acc[r][b], u[j], xb);
                    }
                });
            });
        }
        add_group(job, g, r0, acc, &mut facc);
    }
    // SAFETY: features and output per this function's contract; rows r0.. exist.
    unsafe { store_rows(job, r0, &facc) };
}

/// `facc += f32(mul · acc − offset · Σx) · scale` for group `g`: the scalar path's steps.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
fn add_group<const MR: usize>(
    job: &TileJob,
    g: usize,
    r0: usize,
    // By value: a reference would pin the accumulators in memory during the whole group loop.
    acc: [[__m512i; TILE_BLOCKS]; MR],
    facc: &mut [[__m512; TILE_BLOCKS]; MR],
) {
    let (w, a) = (job.w, job.a);
    let mul = _mm512_set1_epi32(w.mul());
    for (r, (acc, facc)) in acc.iter().zip(facc.iter_mut()).enumerate() {
        let correction = _mm512_set1_epi32(w.offset().wrapping_mul(a.group_sum(r0 + r, g)));
        for (b, (&acc, facc)) in acc.iter().zip(facc.iter_mut()).enumerate() {
            let v = _mm512_sub_epi32(_mm512_mullo_epi32(mul, acc), correction);
            let block = job.tile * TILE_BLOCKS + b;
            // SAFETY: 16 scales per block and group.
            let s = unsafe { _mm512_loadu_ps(w.block_scales(g, block).as_ptr()) };
            *facc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(v), s, *facc);
        }
    }
}

/// Writes `facc · xs[row] (+ bias)`, activated, to rows `r0..r0 + MR` × the tile's blocks (the
/// columns below N); a block's rows go through the activation together ([`activate_all`]).
///
/// # Safety
/// The CPU must support avx512f; `job.out` must be valid for writes of those rows × the tile's
/// columns below N, and no other thread may access them meanwhile.
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
pub(super) unsafe fn store_rows<const MR: usize>(
    job: &TileJob,
    r0: usize,
    facc: &[[__m512; TILE_BLOCKS]; MR],
) {
    for b in 0..TILE_BLOCKS {
        let col0 = (job.tile * TILE_BLOCKS + b) * BLOCK;
        if col0 >= job.w.n() {
            return;
        }
        let width = BLOCK.min(job.w.n() - col0);
        let keep: __mmask16 = if width == BLOCK {
            !0
        } else {
            (1u16 << width) - 1
        };
        // SAFETY: the mask covers only columns < N, inside `bias`.
        let bias = job
            .bias
            .map(|bias| unsafe { _mm512_maskz_loadu_ps(keep, bias.as_ptr().add(col0)) });
        let mut y = [_mm512_setzero_ps(); MR];
        for (r, (y, row)) in y.iter_mut().zip(facc).enumerate() {
            *y = _mm512_mul_ps(row[b], _mm512_set1_ps(job.a.row_scale(r0 + r)));
            if let Some(bias) = bias {
                *y = _mm512_add_ps(*y, bias);
            }
        }
        // SAFETY: this path runs with the vector width's features.
        unsafe { activate_all(&mut y, job.activation) };
        for (r, &y) in y.iter().enumerate() {
            let row = r0 + r;
            // SAFETY: the row's columns col0..col0 + width < N belong to this tile (caller's
            // contract).
            unsafe { _mm512_mask_storeu_ps(job.out.0.add(row * job.stride + col0), keep, y) };
        }
    }
}
