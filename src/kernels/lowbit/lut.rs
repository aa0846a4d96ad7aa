//! Binary planes by table lookup (T-MAC style, AVX-512 VBMI + GFNI), batch 1.
//!
//! For every 4 activations `x[k..k+4]` the 16 sums `Σ_{i∈S} x_i` over all subsets S are
//! precomputed once per call; a column's 4 one-bit codes then select one sum. To stay exact with
//! 8-bit activations the sums are split: `x = 16·hi + lo` (`lo` ∈ 0..15, `hi` ∈ −8..7), so the lo
//! table holds 0..60 (unsigned) and the hi table −32..28 (signed), both bytes. One `vpermi2b`
//! looks up 64 sums from a 128-byte table (8 groups of 4 k), and `vpdpbusd` against ones adds
//! them into the column's i32 accumulator: `Σ u·x = 16·Σ hi-sums + Σ lo-sums`, the same integer
//! as the shift-and kernel, so the results are bit-identical.
//!
//! The packed lines are the 1-bit layout of `pack.rs` (byte `c·4 + i` of a line holds bit `j` =
//! code of `k = j·4 + i`); one `gf2p8affineqb` transposes each 8×8 bit block (2 columns × 4
//! bytes) so that byte `j` holds the 4-bit codes of sub-quad `j` for both columns (low nibble:
//! odd column, high nibble: even column, code bit `t` ↔ `k = j·4 + 3 − t`).

use std::arch::x86_64::*;

use super::avx512::store_rows;
use super::pack::CacheLine;
use super::{TILE_BLOCKS, TileJob};

/// Bytes of tables per 32 activations (one packed line): lo and hi, 8 sub-quads × 16 entries.
pub(crate) const TABLE_BYTES_PER_LINE: usize = 256;

/// Whether this CPU has the instructions (on top of AVX-512 VNNI).
pub(crate) fn available() -> bool {
    is_x86_feature_detected!("avx512vbmi") && is_x86_feature_detected!("gfni")
}

/// Tables for one activation row of `k_total` values: per 32 values, 128 lo bytes then 128 hi
/// bytes, entry `j·16 + t` = sum over the set bits `t'` of `t` of `x[j·4 + 3 − t']`.
pub(crate) fn build_tables(x: &[i8], out: &mut Vec<u8>) {
    out.clear();
    for line in x.chunks_exact(32) {
        let mut lo = [0u8; 128];
        let mut hi = [0u8; 128];
        for j in 0..8 {
            for t in 0..16usize {
                let (mut l, mut h) = (0i32, 0i32);
                for bit in 0..4 {
                    if t >> bit & 1 == 1 {
                        let v = i32::from(line[j * 4 + 3 - bit]);
                        l += v & 15;
                        h += v >> 4;
                    }
                }
                lo[j * 16 + t] = l as u8;
                hi[j * 16 + t] = h as i8 as u8;
            }
        }
        out.extend_from_slice(&lo);
        out.extend_from_slice(&hi);
    }
}

/// Row 0 × the 64 columns of the job's tile, from `tables` (see [`build_tables`]).
///
/// # Safety
/// The CPU must support avx512f/bw/vnni/vbmi and gfni; the job's weights must be 1-bit;
/// `job.out` must be valid for writes of row 0 × the tile's columns (`< N`), and no other thread
/// may access them meanwhile.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx512vbmi,gfni")]
#[allow(clippy::needless_range_loop)]
pub(super) unsafe fn tile(job: &TileJob, tables: &[u8]) {
    let (w, a) = (job.w, job.a);
    debug_assert_eq!(w.bits(), 1);
    let blocks: [&[CacheLine]; TILE_BLOCKS] =
        std::array::from_fn(|b| w.block_lines(job.tile * TILE_BLOCKS + b));
    let lines_per_group = w.seg() / 32;
    // gf2p8affine with the data as the matrix and byte b of the operand = 1 << b: result byte b
    // bit i = data byte (7 − i) bit b (an 8×8 bit transpose, bytes reversed).
    let unit = _mm512_set1_epi64(0x8040_2010_0804_0201u64 as i64);
    let nibble = _mm512_set1_epi8(0x0f);
    // Sub-quad j of every byte position, in bits 4..6 of the table index.
    let sub_quad = _mm512_set1_epi64(0x7060_5040_3020_1000u64 as i64);
    let ones = _mm512_set1_epi8(1);
    let mut facc = [_mm512_setzero_ps(); TILE_BLOCKS];
    for g in 0..w.groups() {
        // [even columns, odd columns] × [lo, hi] per block.
        let mut acc = [[_mm512_setzero_si512(); 4]; TILE_BLOCKS];
        for l in g * lines_per_group..(g + 1) * lines_per_group {
            let t = &tables[l * TABLE_BYTES_PER_LINE..(l + 1) * TABLE_BYTES_PER_LINE];
            // SAFETY: 256 bytes of tables per line.
            let (lo0, lo1, hi0, hi1) = unsafe {
                (
                    _mm512_loadu_si512(t.as_ptr().cast()),
                    _mm512_loadu_si512(t.as_ptr().add(64).cast()),
                    _mm512_loadu_si512(t.as_ptr().add(128).cast()),
                    _mm512_loadu_si512(t.as_ptr().add(192).cast()),
                )
            };
            for b in 0..TILE_BLOCKS {
                // SAFETY: CacheLine is 64 bytes, 64-byte aligned.
                let v = unsafe { _mm512_load_si512(blocks[b][l].0.as_ptr().cast()) };
                let tr = _mm512_gf2p8affine_epi64_epi8::<0>(unit, v);
                let odd = _mm512_or_si512(_mm512_and_si512(tr, nibble), sub_quad);
                let even = _mm512_or_si512(
                    _mm512_and_si512(_mm512_srli_epi16::<4>(tr), nibble),
                    sub_quad,
                );
                for (s, idx) in [even, odd].into_iter().enumerate() {
                    let lo = _mm512_permutex2var_epi8(lo0, idx, lo1);
                    let hi = _mm512_permutex2var_epi8(hi0, idx, hi1);
                    acc[b][2 * s] = _mm512_dpbusd_epi32(acc[b][2 * s], lo, ones);
                    acc[b][2 * s + 1] = _mm512_dpbusd_epi32(acc[b][2 * s + 1], ones, hi);
                }
            }
        }
        let mul = _mm512_set1_epi32(w.mul());
        let correction = _mm512_set1_epi32(w.offset().wrapping_mul(a.group_sum(0, g)));
        for b in 0..TILE_BLOCKS {
            // Dword 2p holds sub-quads 0..3 and dword 2p + 1 sub-quads 4..7 of column pair p.
            let total = |lo: __m512i, hi: __m512i| {
                let s = _mm512_add_epi32(_mm512_slli_epi32::<4>(hi), lo);
                _mm512_add_epi32(s, _mm512_srli_epi64::<32>(s))
            };
            let even = total(acc[b][0], acc[b][1]);
            let odd = total(acc[b][2], acc[b][3]);
            let sum = _mm512_mask_blend_epi32(0xaaaa, even, _mm512_slli_epi64::<32>(odd));
            let v = _mm512_sub_epi32(_mm512_mullo_epi32(mul, sum), correction);
            let block = job.tile * TILE_BLOCKS + b;
            // SAFETY: 16 scales per block and group.
            let s = unsafe { _mm512_loadu_ps(w.block_scales(g, block).as_ptr()) };
            facc[b] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(v), s, facc[b]);
        }
    }
    // SAFETY: features and output (row 0) per this function's contract.
    unsafe { store_rows(job, 0, &[facc]) };
}
