//! Sub-8-bit GEMV/GEMM: 6-bit, 4-bit, 2-bit (ternary) and 1-bit (binary-coded planes) weight
//! codes (and 8-bit ones) as the **unsigned** operand of `vpdpbusd`, activations as the signed
//! one. Paths per [`Isa`]:
//! AVX-512 VNNI (`avx512.rs`, plus a lookup-table kernel for binary planes, `lut.rs`), AVX-VNNI
//! and AVX2 (`avx2.rs`: 256-bit `vpdpbusd`, or `vpmaddubsw` + `vpmaddwd` where the code ranges
//! keep it exact) and scalar.
//!
//! `out[m][n] = xs[m] · Σ_g scale[g][n] · (mul · Σ_{k∈g} u[n][k] · x[m][k] − offset · Σ_{k∈g} x[m][k]) + bias[n]`
//!
//! * A stored code is `u = q + offset` (uniform: `offset = 2^(bits−1)`, ternary: 1), so
//!   `Σ u·x = Σ q·x + offset · Σx`: the correction needs only the activation sums per group,
//!   computed once per row ([`LowBitActivations`]). No sign extension in the inner loop: a nibble
//!   or 2-bit code is one shift and one AND; 6-bit codes come in three-line units (`pack.rs`).
//! * Binary-coding planes store `u = (s + 1) / 2` for a sign `s`, and `Σ s·x = 2·Σ u·x − Σx`
//!   (`mul = 2`, `offset = 1`). The planes are laid end to end along K and the activations are
//!   repeated once per plane, so a `q`-plane matrix is a `q`-group 1-bit matrix whose group
//!   scales are the planes' α: one kernel for every format.
//! * Groups (group-wise scales, bcq planes, or the whole row for per-channel) are a multiple of
//!   64 values; the integer group sum is converted to f32 and accumulated with one fused
//!   multiply-add per group. Every path performs the same integer sums and the same f32
//!   operations in the same order, so all paths give bit-identical outputs (tests check this
//!   against [`reference`], which does not use the packing).
//! * Batches of more than [`GEMV_MAX_ROWS`] rows first widen each 64-column tile to 8-bit codes
//!   (in L1/L2) and then run the same kernel on bytes, so the decode is paid once per call, not
//!   once per row.

/// Runs `$body` with `$i` bound to each constant `0..$n` (`$n ≤ 8`, a constant), unrolled in the
/// source: register tiles indexed by `$i` must have constant indices to stay in registers, and
/// LLVM does not fully unroll loops with bodies this large by itself.
#[cfg(target_arch = "x86_64")]
macro_rules! unrolled {
    ($n:expr, $i:ident, $body:block) => {
        unrolled!(@ $n, $i, $body, 0 1 2 3 4 5 6 7)
    };
    (@ $n:expr, $i:ident, $body:block, $($k:literal)*) => {
        debug_assert!($n <= 8);
        $(
            if $k < $n {
                let $i: usize = $k;
                $body
            }
        )*
    };
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2;
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512;
#[cfg(target_arch = "x86_64")]
mod lut;
mod pack;
pub(crate) mod scalar;

use std::cell::Cell;

pub use pack::{LowBitActivations, PackedLowBit};

use crate::kernels::cpu::Isa;
use crate::kernels::epilogue::Activation;
use crate::kernels::int8::{QuantizedActivations, quantize_activations};
use crate::kernels::parallel::{self, SendPtr};

/// Output columns per vector (i32 lanes of a zmm).
pub(crate) const BLOCK: usize = 16;
/// Column blocks computed together: 4 independent accumulator chains per row.
pub(crate) const TILE_BLOCKS: usize = 4;
pub(crate) const TILE: usize = BLOCK * TILE_BLOCKS;
/// Group lengths and padded K are multiples of this.
pub const GROUP_ALIGN: usize = 64;
/// Up to this many rows decode the packed codes directly; more rows widen a tile to bytes first.
pub const GEMV_MAX_ROWS: usize = 4;

thread_local! {
    static INT8_SCRATCH: Cell<QuantizedActivations> = Cell::new(QuantizedActivations::new());
    // The widened (8-bit) codes of one tile, reused by every call on this thread.
    static WIDE: Cell<Vec<pack::CacheLine>> = const { Cell::new(Vec::new()) };
}

/// The packed lines of the job's tile, one slice per column block.
#[cfg(target_arch = "x86_64")]
pub(crate) fn tile_blocks<'a>(job: &TileJob<'a>) -> [&'a [pack::CacheLine]; TILE_BLOCKS] {
    std::array::from_fn(|b| job.w.block_lines(job.tile * TILE_BLOCKS + b))
}

/// For many rows: the job's tile decoded once into 8-bit codes by `widen` (a block's packed
/// lines → one line per 4 k), then `run` on those blocks, so every row pass is a plain byte GEMM.
/// The buffer is kept per thread.
#[cfg(target_arch = "x86_64")]
pub(crate) fn with_widened_tile(
    job: &TileJob,
    widen: impl Fn(&[pack::CacheLine], &mut [pack::CacheLine]),
    run: impl FnOnce(&[&[pack::CacheLine]; TILE_BLOCKS]),
) {
    let mut wide = WIDE.take();
    let per_block = job.w.k_total() / 4;
    wide.clear();
    wide.resize(per_block * TILE_BLOCKS, pack::CacheLine([0; 64]));
    for (b, lines) in tile_blocks(job).iter().enumerate() {
        widen(lines, &mut wide[b * per_block..(b + 1) * per_block]);
    }
    let wide_blocks: [&[pack::CacheLine]; TILE_BLOCKS] =
        std::array::from_fn(|b| &wide[b * per_block..(b + 1) * per_block]);
    run(&wide_blocks);
    WIDE.set(wide);
}

/// Quantizes `x` (`m × k`, f32) exactly as the int8 kernels do (per row, symmetric, ±127) and lays
/// the codes out for `w` (signed, padded, repeated per bcq plane, with per-group sums).
pub fn quantize_for(isa: Isa, x: &[f32], m: usize, w: &PackedLowBit, out: &mut LowBitActivations) {
    let mut qa = INT8_SCRATCH.take();
    quantize_activations(isa, x, m, w.k(), &mut qa);
    out.fill_from(&qa, w);
    INT8_SCRATCH.set(qa);
}

/// Whether `isa` runs the AVX-512 kernels (the lookup-table one among them).
fn avx512_path(isa: Isa) -> bool {
    // The low-bit formats have no AMX kernel: the amx path runs their AVX-512 ones.
    cfg!(target_arch = "x86_64") && matches!(isa, Isa::Avx512Vnni | Isa::Amx)
}

/// `out[m][n]` (row stride `stride`) for all rows of `a`, then `activation` (the int8 kernels'
/// GELU/ReLU, vectorized alike); see the module comment for the formula.
/// Panics if the CPU lacks `isa` or on mismatched shapes.
pub fn gemm(
    isa: Isa,
    a: &LowBitActivations,
    w: &PackedLowBit,
    bias: Option<&[f32]>,
    activation: Activation,
    out: &mut [f32],
    stride: usize,
) {
    gemm_binary_lut(isa, a, w, bias, activation, out, stride, BINARY_LUT);
}

/// Whether batch-1 binary planes use the lookup-table kernel when the CPU has it. Measured
/// slower than shift-and-`vpdpbusd` on this machine (README, "Kernel speed against int8": the
/// exact 8-bit tables need two `vpermi2b` lookups per 64 codes), so off; kept, tested and timed
/// beside the other so that the choice can be revisited.
pub const BINARY_LUT: bool = false;

/// Whether [`gemm_binary_lut`] with `lut` would run the lookup-table kernel for these operands.
pub fn uses_binary_lut(isa: Isa, a: &LowBitActivations, w: &PackedLowBit, lut: bool) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        lut && avx512_path(isa) && w.bits() == 1 && a.m() == 1 && lut::available()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (isa, a, w, lut);
        false
    }
}

/// [`gemm`] with the binary-plane kernel chosen by `lut` (batch 1, AVX-512 VBMI + GFNI only:
/// lookup tables; otherwise shift-and-`vpdpbusd`). Both give bit-identical results.
#[allow(clippy::too_many_arguments)]
pub fn gemm_binary_lut(
    isa: Isa,
    a: &LowBitActivations,
    w: &PackedLowBit,
    bias: Option<&[f32]>,
    activation: Activation,
    out: &mut [f32],
    stride: usize,
    lut: bool,
) {
    if let Err(e) = isa.ensure_available() {
        panic!("{e}");
    }
    assert_eq!(
        a.k_total(),
        w.k_total(),
        "activations were laid out for another matrix"
    );
    assert!(stride >= w.n(), "row stride {stride} < N={}", w.n());
    let m = a.m();
    if m == 0 || w.n() == 0 {
        return;
    }
    assert!(out.len() >= (m - 1) * stride + w.n(), "output too short");
    if let Some(b) = bias {
        assert_eq!(b.len(), w.n(), "bias length must equal N");
    }
    let tiles = w.tiles();
    let threads = parallel::threads_for(m * tiles * TILE * w.k_total());
    let chunks = parallel::units_for(threads).clamp(1, tiles);
    let per_chunk = tiles.div_ceil(chunks);
    let out_ptr = SendPtr(out.as_mut_ptr());
    let use_lut = uses_binary_lut(isa, a, w, lut);
    let tile_kernel = isa.kernels().lowbit_tile;
    #[cfg(target_arch = "x86_64")]
    let tables = use_lut.then(|| {
        let mut t = Vec::new();
        lut::build_tables(a.row(0), &mut t);
        t
    });
    let unit = |c: usize| {
        let range = c * per_chunk..((c + 1) * per_chunk).min(tiles);
        for tile in range {
            let job = TileJob {
                a,
                w,
                bias,
                activation,
                out: out_ptr,
                stride,
                tile,
            };
            #[cfg(target_arch = "x86_64")]
            if let Some(tables) = &tables {
                // SAFETY: `uses_binary_lut` checked the CPU features, 1-bit weights and one row;
                // the tile's columns are disjoint from every other unit's.
                unsafe { lut::tile(&job, tables) };
                continue;
            }
            // SAFETY: `isa` is available (checked above); the tile's columns are disjoint from
            // every other unit's, and `out` covers all rows × N.
            unsafe { tile_kernel(&job) };
        }
    };
    parallel::run_units(tiles.div_ceil(per_chunk), threads, unit);
}

/// One 64-column tile of one call, for all rows.
pub(crate) struct TileJob<'a> {
    pub(crate) a: &'a LowBitActivations,
    pub(crate) w: &'a PackedLowBit,
    pub(crate) bias: Option<&'a [f32]>,
    pub(crate) activation: Activation,
    pub(crate) out: SendPtr<f32>,
    pub(crate) stride: usize,
    pub(crate) tile: usize,
}

/// The f32 tail shared by every path: `act(facc · xs (+ bias))`.
#[inline(always)]
pub(crate) fn finish(facc: f32, xs: f32, bias: Option<f32>, activation: Activation) -> f32 {
    let mut y = facc * xs;
    if let Some(b) = bias {
        y += b;
    }
    activation.activate(y)
}

/// Straight from the signed codes of a [`crate::layers::LowBitMatrix`]-like description,
/// independent of the packing: `codes[n][plane][k]`, `scales[n][group]` with groups of
/// `group_len` original columns (bcq: one group per plane). The reference the tests compare
/// every path against, bit for bit.
#[allow(clippy::too_many_arguments)]
pub fn reference(
    a: &LowBitActivations,
    codes: &[i8],
    scales: &[f32],
    n: usize,
    k: usize,
    planes: usize,
    group_len: usize,
    bias: Option<&[f32]>,
    activation: Activation,
) -> Vec<f32> {
    let groups_per_plane = k.div_ceil(group_len.max(1)).max(1);
    let groups = groups_per_plane * planes;
    let mut out = vec![0.0; a.m() * n];
    for m in 0..a.m() {
        let x = &a.row(m)[..k];
        for col in 0..n {
            let mut facc = 0.0f32;
            for g in 0..groups {
                let (p, gi) = (g / groups_per_plane, g % groups_per_plane);
                let ks = gi * group_len..((gi + 1) * group_len).min(k);
                let row = &codes[(col * planes + p) * k..(col * planes + p + 1) * k];
                let dot: i32 = ks.map(|kk| i32::from(row[kk]) * i32::from(x[kk])).sum();
                facc = (dot as f32).mul_add(scales[col * groups + g], facc);
            }
            out[m * n + col] = finish(facc, a.row_scale(m), bias.map(|b| b[col]), activation);
        }
    }
    out
}
