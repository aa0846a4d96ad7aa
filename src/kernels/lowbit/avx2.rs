//! AVX-VNNI and AVX2 paths over the same packed layout as the AVX-512 one. A 64-byte line is 16
//! columns × 4 k; a ymm holds 8 columns (i32 lanes), so a line is two ymm halves and a tile is 8
//! vectors. One pass computes `MR` rows × `NV` of those vectors: 1 × 8 (a whole tile, 8
//! independent accumulator chains for the GEMV; 1 × 4 for 6-bit codes, whose units are three
//! lines) or 2 × 4 (16 ymm registers leave no room for 2 × 8 accumulators).
//!
//! * AVX-VNNI: VEX `vpdpbusd`, the AVX-512 arithmetic on half the width.
//! * AVX2: `vpmaddubsw` (adjacent u8·s8 products summed into a **saturating** s16) then
//!   `vpmaddwd` against ones (s16 pairs → s32). This is exact only if no s16 sum saturates.
//!   Activations are in −128..=127, so a `vpmaddubsw` lane for codes ≤ `u` lies in
//!   `[−2·128·u, 2·127·u]`, inside s16 (`−32768` included) for `u ≤ 128` ([`MADDUBS_MAX_CODE`]).
//!   The stored codes are: 1-bit ≤ 1, 2-bit ≤ 3 (ternary ≤ 2), 4-bit ≤ 15, 6-bit (int5, int6:
//!   `q + 32`) ≤ 63, 8-bit uniform int7 `q + 64` ≤ 127, and tiles widened to bytes for batches
//!   over [`GEMV_MAX_ROWS`] keep their 1/2/4/6-bit values. Only uniform 8-bit codes (`q + 128`,
//!   up to 255; no serving scheme uses them) can exceed 128: a matrix holding such a code takes
//!   a split pass (`u = 16·hi + lo`, both nibbles ≤ 15). Besides, the `vpmaddubsw` results of
//!   consecutive sub-quads are added in s16 (`vpaddw`) before one `vpmaddwd` while their sum
//!   provably fits ([`s16_run`]: 8 for 1-bit, 4 for 2-bit, 2 for 4- and 6-bit codes), which
//!   saves most of the widening work.
//!
//! Integer sums wrap identically in every order, and the f32 steps per group and per output are
//! those of the scalar path (convert, fused multiply-add, multiply, add, activation), so the
//! results are bit-identical to it and to the AVX-512 path.

use std::arch::x86_64::*;

use super::pack::{CacheLine, unit};
use super::{BLOCK, GEMV_MAX_ROWS, TILE, TILE_BLOCKS, TileJob, tile_blocks, with_widened_tile};
use crate::kernels::epilogue::Activation;
use crate::kernels::simd::avx2::{activate, gelu_n};

/// Columns (i32 lanes) per ymm vector.
const LANES: usize = BLOCK / 2;
/// ymm vectors per tile.
const VECS: usize = TILE / LANES;
/// As in the AVX-512 path: a core alone needs software prefetch to stream weights from DRAM.
const PREFETCH_LINES: usize = 64;

/// The largest unsigned code `vpmaddubsw` may multiply without saturating (see the module
/// comment): `2 · 128 · 128 = 32768`, and `−32768` is an s16.
pub(crate) const MADDUBS_MAX_CODE: u32 = 128;

/// How many `vpmaddubsw` results of `bits`-bit codes may be added in s16 before the sum could
/// leave it: each lies in `[−256 · umax, 254 · umax]`.
const fn s16_run(bits: u32) -> usize {
    let umax = if bits >= 8 {
        MADDUBS_MAX_CODE as usize
    } else {
        (1 << bits) - 1
    };
    32768 / (256 * umax)
}

/// One pass: rows `r0..r0 + MR` × vectors `v0..v0 + NV` of the tile.
type Pass = unsafe fn(&TileJob, &[&[CacheLine]; TILE_BLOCKS], usize, usize);

/// [`tile`] on 256-bit `vpdpbusd`.
///
/// # Safety
/// As [`tile`], with avxvnni.
pub(crate) unsafe fn tile_vnni(job: &TileJob) {
    // SAFETY: forwarded contract.
    unsafe { tile(job, true) }
}

/// [`tile`] on `vpmaddubsw` + `vpmaddwd`.
///
/// # Safety
/// As [`tile`].
pub(crate) unsafe fn tile_avx2(job: &TileJob) {
    // SAFETY: forwarded contract.
    unsafe { tile(job, false) }
}

/// Computes every row of the job's tile, on `vpdpbusd` if `vnni`, else on `vpmaddubsw`.
///
/// # Safety
/// The CPU must support avx2 and fma, and avxvnni too if `vnni`; `job.out` must be valid for
/// writes of all rows × the tile's columns (`< N`), and no other thread may access them
/// meanwhile.
#[target_feature(enable = "avx2,fma")]
unsafe fn tile(job: &TileJob, vnni: bool) {
    let w = job.w;
    if job.a.m() > GEMV_MAX_ROWS && w.bits() < 8 {
        let bits = w.bits();
        with_widened_tile(
            job,
            |lines, dst| match bits {
                1 => widen::<1>(lines, dst),
                2 => widen::<2>(lines, dst),
                4 => widen::<4>(lines, dst),
                _ => widen::<6>(lines, dst),
            },
            // Widened codes keep their 1/2/4/6-bit values (≤ 63): no split needed.
            // SAFETY: features and output per this function's contract (the closure runs
            // inside it).
            |wide| unsafe { rows(job, wide, passes::<8>(vnni, false)) },
        );
        return;
    }
    let blocks = tile_blocks(job);
    let split = w.bits() == 8 && u32::from(w.max_code()) > MADDUBS_MAX_CODE;
    let passes = match w.bits() {
        1 => passes::<1>(vnni, false),
        2 => passes::<2>(vnni, false),
        4 => passes::<4>(vnni, false),
        6 => passes::<6>(vnni, false),
        _ => passes::<8>(vnni, split),
    };
    // SAFETY: features and output per this function's contract.
    unsafe { rows(job, &blocks, passes) };
}

/// The one-row and two-row passes of a code width and path.
///
/// A 6-bit unit is three lines per vector: a one-row pass over all 8 vectors would need 24
/// loaded halves in flight and spills, so it covers half a tile, as the two-row pass does.
fn passes<const BITS: u32>(vnni: bool, split: bool) -> Passes {
    let half = BITS == 6;
    let (one, one_vectors) = match (vnni, split, half) {
        (true, _, false) => (pass_vnni::<BITS, 1, VECS> as Pass, VECS),
        (true, _, true) => (pass_vnni::<BITS, 1, 4> as Pass, 4),
        (false, false, false) => (pass_avx2::<BITS, 1, VECS, false> as Pass, VECS),
        (false, false, true) => (pass_avx2::<BITS, 1, 4, false> as Pass, 4),
        (false, true, _) => (pass_avx2::<BITS, 1, VECS, true> as Pass, VECS),
    };
    let two = match (vnni, split) {
        (true, _) => pass_vnni::<BITS, 2, 4> as Pass,
        (false, false) => pass_avx2::<BITS, 2, 4, false>,
        (false, true) => pass_avx2::<BITS, 2, 4, true>,
    };
    Passes {
        one,
        one_vectors,
        two,
    }
}

/// The passes of one call: one row × `one_vectors` vectors, two rows × 4 vectors.
struct Passes {
    one: Pass,
    one_vectors: usize,
    two: Pass,
}

/// Runs every row of the job through the passes.
///
/// # Safety
/// As [`tile`], for the features the passes need.
unsafe fn rows(job: &TileJob, blocks: &[&[CacheLine]; TILE_BLOCKS], passes: Passes) {
    let m = job.a.m();
    let mut r = 0;
    while r < m {
        let (pass, rows, vectors) = if m - r >= 2 {
            (passes.two, 2, 4)
        } else {
            (passes.one, 1, passes.one_vectors)
        };
        for v0 in (0..VECS).step_by(vectors) {
            // SAFETY: rows r..r + rows exist; features and output per the caller's contract.
            unsafe { pass(job, blocks, r, v0) };
        }
        r += rows;
    }
}

/// Decodes every unit of packed lines into one line of bytes per sub-quad.
#[target_feature(enable = "avx2")]
fn widen<const BITS: u32>(lines: &[CacheLine], out: &mut [CacheLine]) {
    let (unit_lines, unit_k) = unit(BITS);
    let subq = unit_k / 4;
    assert_eq!(out.len() * unit_lines, lines.len() * subq);
    for (src, dst) in lines
        .chunks_exact(unit_lines)
        .zip(out.chunks_exact_mut(subq))
    {
        for h in 0..2 {
            let codes = decode::<BITS>(load_unit::<BITS>(src, 0, h, false));
            for (d, u) in dst.iter_mut().zip(codes) {
                // SAFETY: CacheLine is 64 bytes, 64-byte aligned: both halves are aligned ymm.
                unsafe { _mm256_store_si256(d.0.as_mut_ptr().add(32 * h).cast(), u) };
            }
        }
    }
}

/// Half `h` (8 columns) of line `l` of a block, with a prefetch of the line `PREFETCH_LINES`
/// ahead when streaming (one row).
#[inline]
#[target_feature(enable = "avx2")]
fn load_half(lines: &[CacheLine], l: usize, h: usize, prefetch: bool) -> __m256i {
    if prefetch && h == 0 && l + PREFETCH_LINES < lines.len() {
        _mm_prefetch::<_MM_HINT_T0>(lines[l + PREFETCH_LINES].0.as_ptr().cast());
    }
    // SAFETY: CacheLine is 64 bytes, 64-byte aligned; h < 2.
    unsafe { _mm256_load_si256(lines[l].0.as_ptr().add(32 * h).cast()) }
}

/// The sub-quads of unsigned byte codes in one unit's halves (`unit(BITS).1 / 4` of them; the
/// rest stay zero): one line shifted and masked, or the three lines of a 6-bit unit, whose
/// fourth sub-quad is gathered from their top two bits (see `pack.rs`).
#[inline]
#[target_feature(enable = "avx2")]
fn decode<const BITS: u32>(halves: [__m256i; 3]) -> [__m256i; 8] {
    let mut out = [_mm256_setzero_si256(); 8];
    match BITS {
        8 => out[0] = halves[0],
        6 => {
            let low = _mm256_set1_epi8(0x3f);
            let top = _mm256_set1_epi8(0xc0u8 as i8);
            // Each step moves the gathered bits down by 2 within their byte: the next byte's
            // bits 0..1, which the 16-bit shift brings in, are always zero here.
            let mut t = _mm256_and_si256(halves[0], top);
            t = _mm256_or_si256(shift_right::<2>(t), _mm256_and_si256(halves[1], top));
            t = _mm256_or_si256(shift_right::<2>(t), _mm256_and_si256(halves[2], top));
            for (o, &h) in out.iter_mut().zip(&halves) {
                *o = _mm256_and_si256(h, low);
            }
            out[3] = shift_right::<2>(t);
        }
        _ => {
            let mask = _mm256_set1_epi8(((1u16 << BITS) - 1) as i8);
            let mut v = halves[0];
            for o in out.iter_mut().take(8 / BITS as usize) {
                *o = _mm256_and_si256(v, mask);
                v = shift_right::<BITS>(v);
            }
        }
    }
    out
}

/// Halves `h` of the `unit(BITS).0` lines of unit `unit_index` (the rest zero), prefetching
/// ahead if `prefetch`.
#[inline]
#[target_feature(enable = "avx2")]
fn load_unit<const BITS: u32>(
    lines: &[CacheLine],
    unit_index: usize,
    h: usize,
    prefetch: bool,
) -> [__m256i; 3] {
    let unit_lines = unit(BITS).0;
    std::array::from_fn(|t| {
        if t < unit_lines {
            load_half(lines, unit_index * unit_lines + t, h, prefetch)
        } else {
            _mm256_setzero_si256()
        }
    })
}

/// `v >> BITS` per 16-bit lane (the AVX2 intrinsic takes an i32 immediate, `BITS` is a u32).
#[inline]
#[target_feature(enable = "avx2")]
fn shift_right<const BITS: u32>(v: __m256i) -> __m256i {
    match BITS {
        1 => _mm256_srli_epi16::<1>(v),
        2 => _mm256_srli_epi16::<2>(v),
        4 => _mm256_srli_epi16::<4>(v),
        6 => _mm256_srli_epi16::<6>(v),
        _ => unreachable!("no {BITS}-bit shift in the packed layout"),
    }
}

/// The 4 activations at `k` of a row, in every i32 lane.
///
/// # Safety
/// `x` must be readable for `k + 4` bytes.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn broadcast(x: *const i8, k: usize) -> __m256i {
    // SAFETY: per the contract.
    _mm256_set1_epi32(unsafe { x.add(k).cast::<i32>().read_unaligned() })
}

/// Block and half of vector `v` of the tile.
fn vector(job: &TileJob, v: usize) -> (usize, usize) {
    (job.tile * TILE_BLOCKS + v / 2, v % 2)
}

/// Rows `r0..r0 + MR` × vectors `v0..v0 + NV` on `vpdpbusd`.
///
/// # Safety
/// The CPU must support avxvnni, avx2 and fma; rows `r0..r0 + MR` must exist and `job.out` be
/// valid for writes of them × the vectors' columns (`< N`), accessed by no other thread.
// Register tiles are indexed [row][vector] on purpose: the loops are fully unrolled.
#[allow(clippy::needless_range_loop)]
#[target_feature(enable = "avxvnni,avx2,fma")]
unsafe fn pass_vnni<const BITS: u32, const MR: usize, const NV: usize>(
    job: &TileJob,
    blocks: &[&[CacheLine]; TILE_BLOCKS],
    r0: usize,
    v0: usize,
) {
    let (w, a) = (job.w, job.a);
    let unit_k = unit(BITS).1;
    let units_per_group = w.seg() / unit_k;
    let x: [*const i8; MR] = std::array::from_fn(|r| a.row(r0 + r).as_ptr());
    let mut facc = [[_mm256_setzero_ps(); NV]; MR];
    for g in 0..w.groups() {
        let mut acc = [[_mm256_setzero_si256(); NV]; MR];
        for un in g * units_per_group..(g + 1) * units_per_group {
            unrolled!(NV, v, {
                let (b, h) = ((v0 + v) / 2, (v0 + v) % 2);
                let codes = decode::<BITS>(load_unit::<BITS>(blocks[b], un, h, MR == 1));
                unrolled!(unit_k / 4, j, {
                    for r in 0..MR {
                        // SAFETY: k + 4 ≤ k_total, the length of every activation row.
                        let xb = unsafe { broadcast(x[r], un * unit_k + j * 4) };
                        acc[r][v] = _mm256_dpbusd_avx_epi32(acc[r][v], codes[j], xb);
                    }
                });
            });
        }
        add_group(job, g, r0, v0, acc, &mut facc);
    }
    // SAFETY: rows and output per this function's contract.
    unsafe { store(job, r0, v0, &facc) };
}

/// Rows `r0..r0 + MR` × vectors `v0..v0 + NV` on `vpmaddubsw` + `vpmaddwd` (exactness: see the
/// module comment). `SPLIT`: 8-bit codes above [`MADDUBS_MAX_CODE`], taken nibble by nibble.
///
/// # Safety
/// The CPU must support avx2 and fma; rows `r0..r0 + MR` must exist and `job.out` be valid for
/// writes of them × the vectors' columns (`< N`), accessed by no other thread. Without `SPLIT`,
/// every code must be ≤ [`MADDUBS_MAX_CODE`].
#[allow(clippy::needless_range_loop)]
#[target_feature(enable = "avx2,fma")]
unsafe fn pass_avx2<const BITS: u32, const MR: usize, const NV: usize, const SPLIT: bool>(
    job: &TileJob,
    blocks: &[&[CacheLine]; TILE_BLOCKS],
    r0: usize,
    v0: usize,
) {
    let (w, a) = (job.w, job.a);
    debug_assert!(
        SPLIT || BITS < 8 || w.bits() < 8 || u32::from(w.max_code()) <= MADDUBS_MAX_CODE,
        "vpmaddubsw would saturate"
    );
    let unit_k = unit(BITS).1;
    let subq = unit_k / 4;
    let units_per_group = w.seg() / unit_k;
    let run = s16_run(BITS);
    let nibble = _mm256_set1_epi8(0x0f);
    let ones = _mm256_set1_epi16(1);
    let sixteens = _mm256_set1_epi16(16);
    let x: [*const i8; MR] = std::array::from_fn(|r| a.row(r0 + r).as_ptr());
    let mut facc = [[_mm256_setzero_ps(); NV]; MR];
    for g in 0..w.groups() {
        let mut acc = [[_mm256_setzero_si256(); NV]; MR];
        for un in g * units_per_group..(g + 1) * units_per_group {
            unrolled!(NV, v, {
                let (b, h) = ((v0 + v) / 2, (v0 + v) % 2);
                let halves = load_unit::<BITS>(blocks[b], un, h, MR == 1);
                if SPLIT {
                    // u = 16·hi + lo: Σ u·x = Σ lo·x + 16·Σ hi·x, each product sum exact.
                    let lo = _mm256_and_si256(halves[0], nibble);
                    let hi = _mm256_and_si256(shift_right::<4>(halves[0]), nibble);
                    for r in 0..MR {
                        // SAFETY: k + 4 ≤ k_total, the length of every activation row.
                        let xb = unsafe { broadcast(x[r], un * unit_k) };
                        let sum_lo = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, xb), ones);
                        let sum_hi = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, xb), sixteens);
                        acc[r][v] = _mm256_add_epi32(acc[r][v], _mm256_add_epi32(sum_lo, sum_hi));
                    }
                } else {
                    let codes = decode::<BITS>(halves);
                    let mut s16 = [_mm256_setzero_si256(); MR];
                    unrolled!(subq, j, {
                        for r in 0..MR {
                            // SAFETY: k + 4 ≤ k_total, the length of every activation row.
                            let xb = unsafe { broadcast(x[r], un * unit_k + j * 4) };
                            // At most `run` products per s16 sum: no saturation, no wrap.
                            let p = _mm256_maddubs_epi16(codes[j], xb);
                            s16[r] = _mm256_add_epi16(s16[r], p);
                            if (j + 1).is_multiple_of(run) || j + 1 == subq {
                                let wide = _mm256_madd_epi16(s16[r], ones);
                                acc[r][v] = _mm256_add_epi32(acc[r][v], wide);
                                s16[r] = _mm256_setzero_si256();
                            }
                        }
                    });
                }
            });
        }
        add_group(job, g, r0, v0, acc, &mut facc);
    }
    // SAFETY: rows and output per this function's contract.
    unsafe { store(job, r0, v0, &facc) };
}

/// `facc += f32(mul · acc − offset · Σx) · scale` for group `g`: the scalar path's steps.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn add_group<const MR: usize, const NV: usize>(
    job: &TileJob,
    g: usize,
    r0: usize,
    v0: usize,
    // By value: a reference would pin the accumulators in memory during the whole group loop.
    acc: [[__m256i; NV]; MR],
    facc: &mut [[__m256; NV]; MR],
) {
    let (w, a) = (job.w, job.a);
    let mul = _mm256_set1_epi32(w.mul());
    for (r, (acc, facc)) in acc.iter().zip(facc.iter_mut()).enumerate() {
        let correction = _mm256_set1_epi32(w.offset().wrapping_mul(a.group_sum(r0 + r, g)));
        for (v, (&acc, facc)) in acc.iter().zip(facc.iter_mut()).enumerate() {
            let value = _mm256_sub_epi32(_mm256_mullo_epi32(mul, acc), correction);
            let (block, h) = vector(job, v0 + v);
            let scales = &w.block_scales(g, block)[h * LANES..(h + 1) * LANES];
            // SAFETY: `scales` holds 8 f32.
            let s = unsafe { _mm256_loadu_ps(scales.as_ptr()) };
            *facc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(value), s, *facc);
        }
    }
}

/// Writes `act(facc · xs (+ bias))` of rows `r0..r0 + MR` × vectors `v0..v0 + NV`, masked to the
/// columns below N.
///
/// # Safety
/// `job.out` must be valid for writes of those rows × columns, accessed by no other thread.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn store<const MR: usize, const NV: usize>(
    job: &TileJob,
    r0: usize,
    v0: usize,
    facc: &[[__m256; NV]; MR],
) {
    let n = job.w.n();
    let lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    // The vectors' first columns and masks; vectors from the first one at or past N on are not
    // stored.
    let mut cols = [(0usize, _mm256_setzero_si256()); NV];
    let mut live = 0;
    for (v, col) in cols.iter_mut().enumerate() {
        let (block, h) = vector(job, v0 + v);
        let col0 = block * BLOCK + h * LANES;
        if col0 >= n {
            break;
        }
        let keep = _mm256_cmpgt_epi32(_mm256_set1_epi32((n - col0).min(LANES) as i32), lane);
        *col = (col0, keep);
        live += 1;
    }
    for (r, facc) in facc.iter().enumerate() {
        let row = r0 + r;
        let row_scale = _mm256_set1_ps(job.a.row_scale(row));
        let mut ys = [_mm256_setzero_ps(); NV];
        for ((y, &facc), &(col0, keep)) in ys.iter_mut().zip(facc).zip(&cols).take(live) {
            *y = _mm256_mul_ps(facc, row_scale);
            if let Some(bias) = job.bias {
                // SAFETY: the mask covers only columns < N, inside `bias`; masked lanes are not
                // read.
                *y = _mm256_add_ps(*y, unsafe {
                    _mm256_maskload_ps(bias.as_ptr().add(col0), keep)
                });
            }
        }
        // SAFETY: this path runs with the vector width's features.
        unsafe {
            if matches!(job.activation, Activation::Gelu) {
                // The row's vectors at once: their GELUs' dependency chains overlap (lanes past
                // N compute a value nobody stores).
                gelu_n(&mut ys);
            } else {
                ys[..live]
                    .iter_mut()
                    .for_each(|y| *y = activate(*y, job.activation));
            }
        }
        for (&y, &(col0, keep)) in ys.iter().zip(&cols).take(live) {
            // SAFETY: the row's columns col0.. below N belong to this tile (caller's contract);
            // masked lanes are not written.
            unsafe { _mm256_maskstore_ps(job.out.0.add(row * job.stride + col0), keep, y) };
        }
    }
}
