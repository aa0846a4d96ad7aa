//! AMX path: `tdpbusd` (u8 × s8 → s32) on 16×16 accumulator tiles for blocks of 16 or 32 rows.
//!
//! * **Weights**: the packed VNNI panels `[N/48][K/4][48][4]` are read as they are. One row of a
//!   B tile is one K-quad of 16 columns = 64 contiguous bytes of a panel's 192-byte quad row, so
//!   column tile `t` (0..3) of a panel is a `tileloadd` at byte offset `64·t` with a stride of
//!   192 bytes, and one tile spans 16 quads = 64 K values (3072 bytes of the panel).
//! * **Activations**: an A tile is 16 quantized rows × 64 K bytes, loaded with the rows' own
//!   stride. A K that is not a multiple of 64 leaves a last chunk of fewer than 16 quads; its A
//!   and B bytes are copied once per work unit into zero-padded scratch tiles (the packed weights
//!   end at the last quad and the activation rows at the last 4 bytes, so a full-width tile load
//!   would read past them).
//! * **Exactness**: the accumulators start from the panel's `−128·colsum` compensation (a tile
//!   load with stride 0 repeats the 16 values on every row) exactly as the VNNI paths start from
//!   it, `tdpbusd` adds the same u8·s8 products with wrapping 32-bit adds, and the f32 output
//!   goes through `avx512vnni::store`, the AVX-512 epilogue every other AVX-512 output uses. So
//!   the s32 sums and the f32 outputs are bit-identical to the other paths.
//! * **Rows that do not fill a 16-row tile** (all of a call with M < 16, and the last M mod 16
//!   rows of a work unit) go to the AVX-512 VNNI code (`avx512vnni::run`).
//!
//! Tile allocation (palette 1, every tile configured 16 rows × 64 bytes, once per work unit):
//!
//! | tile | holds |
//! |---|---|
//! | tmm0 tmm1 / tmm2 tmm3 | C(0,0) C(0,1) / C(1,0) C(1,1): s32 accumulators, 16 rows × 16 columns |
//! | tmm4 tmm5 | A of row tiles 0 and 1: 16 rows × 64 K bytes (u8) |
//! | tmm6 tmm7 | B of column tiles 0 and 1: 16 K-quads × 16 columns × 4 (s8) |
//!
//! Why 2 A × 2 B → 4 C (32 rows × 32 columns): with 8 tile registers it is the largest block in
//! which every loaded tile feeds two `tdpbusd` (one 1 KiB load per 16×16×64 product) while each
//! operand still has two registers, so the loads of one K step can proceed while the products of
//! the previous one drain. A 2 × 3 block (6 C) would leave one A and one B register, making each
//! load wait for the product that reads the same register (unless the core renames tile
//! registers, which Intel does not document). 2×2 is also oneDNN brgemm's AMX
//! blocking and the one measured in kernels.md §2 (3.3–3.6 TOPS/core at M = 32). A 48-column
//! panel has 3 column tiles, so the kernel works on groups of 2 panels = 3 column-tile pairs; a
//! group of one panel ends with a 1-column-tile block, a unit with 16..31 remaining rows with a
//! 1-row-tile block (both the same `asm!` with a shape flag: a predictable branch per K step).
//!
//! Loop order within a work unit: panel group → K block → column-tile pair → row block. A pair's
//! B slice of one K block (2 × 8 KiB at most) is reused from L1 by the unit's row blocks, whose A
//! tiles of the same K block (another 16 KiB per 32 rows) stream in beside it, both inside the
//! 48 KiB L1d; K blocks of at most 512 bytes bound the two for long K (FFN down-projection,
//! K = 3072), at the cost of storing and reloading the accumulators between K blocks (they go
//! through the same scratch buffer the epilogue reads).
//!
//! The permission request, CPUID checks and a start-up self-test of the real instructions
//! against a scalar sum gate the path ([`usable`]); a failure falls back to AVX-512 VNNI with one
//! log line.
//!
//! Status: written on an AMD EPYC (Zen 4) VM without AMX, where the driver is tested on a tile
//! emulator that transcribes the `asm!` block (unit tests below). First run on AMX hardware
//! (Emerald Rapids, 2026-12-07): the self-test and `tests/int8_kernels.rs` pass bit for bit, and
//! `QUANTSERVE_AMX_ONLY=1 cargo bench --bench gemm_int8` measured 1.9–3.8× the AVX-512 VNNI path
//! at one thread without GELU. The blocking constants are still the reasoned ones.

mod asm;
#[cfg(test)]
mod emulator;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod vector_side;

use std::arch::x86_64::*;
use std::cell::Cell;
use std::marker::PhantomData;
use std::ops::Range;
use std::sync::OnceLock;

use asm::Asm;

use super::{AMX_MR, Isa, Job, NR, Out, PackedI8Weights, QuantizedActivations, avx512vnni};
use crate::kernels::amx_support::{AmxUnavailable, amx_int8};

/// Rows of an A or C tile.
const TILE_ROWS: usize = 16;
/// K bytes of one A tile row = 16 K-quads = the rows of one B tile.
const TILE_K: usize = 64;
/// Bytes of one K-quad row of a packed panel (48 columns × 4).
use super::QUAD_BYTES;
/// Bytes a B tile pointer advances per 64 K values: 16 quad rows of the panel.
const CHUNK_B_BYTES: usize = TILE_K / 4 * QUAD_BYTES;
/// 16-column tiles per panel.
const COL_TILES: usize = NR / 16;
/// Panels per group (see the module comment): 6 column tiles = 3 pairs.
const GROUP_PANELS: usize = 2;
/// At most this many 64-byte K chunks per pass over a group (512 K values): a column-tile pair's
/// B slice is then ≤ 16 KiB. Measured on Emerald Rapids against 16 (B ≤ 32 KiB, which with the
/// A tiles overflows L1): the same at K = 384 and 768, 10–20 % faster at K = 3072 with M = 32–64
/// (`QUANTSERVE_AMX_ONLY=1 cargo bench --bench gemm_int8`, one run each, 2026-12-07).
const K_BLOCK_CHUNKS: usize = 8;

const _: () = assert!(AMX_MR == 2 * TILE_ROWS);

/// Whether this process may run the AMX path: avx512f/bw/vnni (the fallback and the epilogue),
/// AMX-TILE + AMX-INT8 with the tile-data permission granted, and the start-up self-test passed.
/// Decided once per process; the first call writes one log line saying which path `auto` takes.
pub(crate) fn usable() -> bool {
    static USABLE: OnceLock<bool> = OnceLock::new();
    *USABLE.get_or_init(|| {
        let status = check();
        // The path `auto` picks when AMX is out (the fastest other one this CPU has).
        let fallback = || {
            Isa::ALL
                .into_iter()
                .filter(|&isa| isa != Isa::Amx)
                .find(|isa| isa.is_available())
                .unwrap_or(Isa::Scalar)
        };
        match &status {
            Ok(()) => tracing::info!(
                "int8 kernels: AMX int8 usable (amx-tile, amx-int8, tile data permitted, \
                 self-test passed); `auto` runs the amx path"
            ),
            Err(AmxUnavailable::NotInCpu) => tracing::info!(
                "int8 kernels: no AMX int8 on this CPU; `auto` runs the {} path",
                fallback()
            ),
            Err(AmxUnavailable::Refused(why)) => tracing::warn!(
                "int8 kernels: AMX int8 present but not used ({why}); `auto` falls back to the {} \
                 path",
                fallback()
            ),
        }
        status.is_ok()
    })
}

fn check() -> Result<(), AmxUnavailable> {
    // Presence first: a CPU without AMX (and without AVX-512) must not be told AMX is present.
    amx_int8()?;
    if !Isa::Avx512Vnni.is_available() {
        return Err(AmxUnavailable::Refused(
            "avx512f/avx512bw/avx512vnni, which the amx path needs for its epilogue and its \
             leftover rows, are missing"
                .into(),
        ));
    }
    // SAFETY: AVX-512 VNNI is available (checked above) and AMX-TILE/INT8 are present and
    // permitted for this process (`amx_int8`), which is all `self_test::<Asm>` needs.
    unsafe { self_test::<Asm>() }.map_err(AmxUnavailable::Refused)
}

/// Runs the kernel on small fixed problems (a K tail, a second K block, a 16-row block and VNNI
/// leftovers, extreme values, and all four block shapes: 2 × 2, 2 × 1, 1 × 2 and 1 × 1 tiles)
/// and compares with the plain triple loop: a wrong instruction encoding or tile configuration
/// shows here, before any model uses the path.
///
/// # Safety
/// The CPU must support avx512f/bw/vnni, and `T` must be runnable (for [`Asm`]: AMX permitted).
unsafe fn self_test<T: TileUnit>() -> Result<(), String> {
    for &(m, n, k) in &[(49usize, 96usize, 200usize), (32, 48, 1100), (16, 48, 64)] {
        let x: Vec<f32> = (0..m * k)
            .map(|i| match i % 7 {
                0 => 1.0,
                1 => -1.0,
                _ => ((i * 37 % 255) as f32 - 127.0) / 127.0,
            })
            .collect();
        let mut a = QuantizedActivations::new();
        super::quantize_activations(Isa::Scalar, &x, m, k, &mut a);
        let w: Vec<i8> = (0..n * k)
            .map(|i| match i % 5 {
                0 => -128,
                1 => 127,
                _ => (i * 53 % 256) as u8 as i8,
            })
            .collect();
        let packed = PackedI8Weights::pack(&w, n, k, &vec![1.0; n]);
        let mut got = vec![0i32; m * n];
        let job = Job {
            a: &a,
            w: &packed,
            out: Out::I32(got.as_mut_ptr()),
            out_stride: n,
            epilogue: super::Epilogue::default(),
        };
        // SAFETY: forwarded contract; `got` is M×N with stride N, written only by this call.
        unsafe { run_with::<T>(&job, 0..m, 0..packed.panels()) };
        if got != super::gemm_s32_reference(&a, &w, n) {
            return Err(format!("self-test {m}×{n}×{k} gave wrong sums"));
        }
    }
    Ok(())
}

/// Computes output rows `rows` × the columns of `panels`.
///
/// # Safety
/// [`usable`] must have returned true; `job.out` must be valid for writes of `rows` × those
/// columns, and no other thread may access them meanwhile.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
pub(crate) unsafe fn run(job: &Job, rows: Range<usize>, panels: Range<usize>) {
    // SAFETY: forwarded contract (`usable` covers the AVX-512 features and the AMX permission).
    unsafe { run_with::<Asm>(job, rows, panels) }
}

/// [`run`] with the tile instructions of `T` (the real ones, or the emulator in unit tests).
///
/// # Safety
/// As [`run`]; `T` must be runnable on this CPU.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn run_with<T: TileUnit>(job: &Job, rows: Range<usize>, panels: Range<usize>) {
    let tile_end = rows.start + rows.len() / TILE_ROWS * TILE_ROWS;
    if tile_end > rows.start && !panels.is_empty() {
        let mut scratch = SCRATCH.take();
        {
            // SAFETY: `T` is runnable (contract); the session releases the tiles when dropped.
            let _tiles = unsafe { TileSession::<T>::start() };
            let mut group = panels.start;
            while group < panels.end {
                let group_panels = group..(group + GROUP_PANELS).min(panels.end);
                // SAFETY: rows rows.start..tile_end (whole tiles) and the group's panels lie in
                // this unit, so the output contract carries over; tiles are configured.
                unsafe { group_rows::<T>(job, rows.start..tile_end, group_panels, &mut scratch) };
                group += GROUP_PANELS;
            }
        }
        SCRATCH.set(scratch);
    }
    if tile_end < rows.end {
        // SAFETY: forwarded contract; avx512f/bw/vnni are enabled for this function.
        unsafe { avx512vnni::run(job, tile_end..rows.end, panels) };
    }
}

/// Per-thread buffers, reused across calls (a work unit takes them and puts them back).
#[derive(Default)]
struct Scratch {
    /// Accumulators of one panel group: panel-major, then row, one 64-byte vector per column tile
    /// (`[panel][row][COL_TILES]`), the layout `avx512vnni::store` takes per row.
    acc: Vec<[__m512i; COL_TILES]>,
    /// The last K chunk of each row (`TILE_K` bytes, zero past K) when K mod 64 ≠ 0.
    tail_a: Vec<u8>,
    /// The last K chunk of each panel of the group (16 quad rows × 192 bytes, zero past K).
    tail_b: Vec<i8>,
}

thread_local! {
    static SCRATCH: Cell<Scratch> = Cell::new(Scratch::default());
}

/// Rows `rows` (a multiple of 16) × the panels `group` (1 or 2): tiles into `scratch.acc`, then
/// the epilogue.
///
/// # Safety
/// As [`run_with`], for exactly these rows and panels; tiles configured with [`TILE_CONFIG`].
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn group_rows<T: TileUnit>(
    job: &Job,
    rows: Range<usize>,
    group: Range<usize>,
    scratch: &mut Scratch,
) {
    let (a, w) = (job.a, job.w);
    let n_rows = rows.len();
    debug_assert!(n_rows.is_multiple_of(TILE_ROWS) && group.len() <= GROUP_PANELS);
    // Bounds the tile loads below rely on (cheap next to the tile work).
    assert!(rows.end <= a.m() && group.end <= w.panels() && a.row_stride() == w.k_padded());
    let k_quads = w.k_quads();
    let full_chunks = k_quads / (TILE_K / 4);
    let tail_quads = k_quads % (TILE_K / 4);
    let a_stride = a.row_stride();

    scratch
        .acc
        .resize(GROUP_PANELS * n_rows, [_mm512_setzero_si512(); COL_TILES]);
    if tail_quads > 0 {
        let (k0, tail) = (full_chunks * TILE_K, 4 * tail_quads);
        scratch.tail_a.clear();
        scratch.tail_a.resize(n_rows * TILE_K, 0);
        for (dst, m) in scratch.tail_a.chunks_exact_mut(TILE_K).zip(rows.clone()) {
            dst[..tail].copy_from_slice(&a.row(m)[k0..k0 + tail]);
        }
        scratch.tail_b.clear();
        scratch.tail_b.resize(GROUP_PANELS * CHUNK_B_BYTES, 0);
        for (dst, panel) in scratch
            .tail_b
            .chunks_exact_mut(CHUNK_B_BYTES)
            .zip(group.clone())
        {
            let lines = &w.panel_lines(panel)[full_chunks * (CHUNK_B_BYTES / 64)..];
            for (d, s) in dst.iter_mut().zip(lines.iter().flat_map(|line| line.0)) {
                *d = s;
            }
        }
    }

    let col_tiles = group.len() * COL_TILES;
    let acc = scratch.acc.as_mut_ptr().cast::<i32>();
    // Column tile `t` of the group: its panel's index in the group and its place in the panel.
    let tile_of = |t: usize| (t / COL_TILES, t % COL_TILES);
    // Where the accumulators of (row r of the group, column tile t) live: 16 i32 per tile row.
    let acc_at = |r: usize, t: usize| {
        let (p, j) = tile_of(t);
        acc.wrapping_add(((p * n_rows + r) * COL_TILES + j) * 16)
    };
    let acc_stride = COL_TILES * 64;

    let k_blocks = full_chunks.div_ceil(K_BLOCK_CHUNKS).max(1);
    let per_block = full_chunks.div_ceil(k_blocks);
    for kb in 0..k_blocks {
        let chunks = (kb * per_block).min(full_chunks)..((kb + 1) * per_block).min(full_chunks);
        let first = kb == 0;
        let tail = kb + 1 == k_blocks && tail_quads > 0;
        for t0 in (0..col_tiles).step_by(2) {
            let pair = if t0 + 1 < col_tiles { 2 } else { 1 };
            let b_at = |t: usize| {
                let (p, j) = tile_of(t);
                w.panel_ptr(group.start + p)
                    .wrapping_add(j * 64 + chunks.start * CHUNK_B_BYTES)
            };
            let tail_b_at = |t: usize| {
                let (p, j) = tile_of(t);
                scratch
                    .tail_b
                    .as_ptr()
                    .wrapping_add(p * CHUNK_B_BYTES + j * 64)
            };
            let comp_at = |t: usize| {
                let (p, j) = tile_of(t);
                w.panel_compensation(group.start + p)[16 * j..].as_ptr()
            };
            for r in (0..n_rows).step_by(AMX_MR) {
                let row_tiles = if r + AMX_MR <= n_rows { 2 } else { 1 };
                let a_at = |i: usize| {
                    a.data().as_ptr().wrapping_add(
                        (rows.start + r + TILE_ROWS * i) * a_stride + chunks.start * TILE_K,
                    )
                };
                let tail_a_at = |i: usize| {
                    scratch
                        .tail_a
                        .as_ptr()
                        .wrapping_add((r + TILE_ROWS * i) * TILE_K)
                };
                // Entries of a missing second row or column tile stay null: never read.
                let c_index = |i: usize, j: usize| (i < row_tiles && j < pair).then_some((i, j));
                let block = Block {
                    a: [a_at(0), present(row_tiles == 2, a_at(1))],
                    a_stride,
                    b: [b_at(t0), present(pair == 2, b_at(t0 + 1))],
                    chunks: chunks.len(),
                    tail: usize::from(tail),
                    tail_a: [
                        present(tail, tail_a_at(0)),
                        present(tail && row_tiles == 2, tail_a_at(1)),
                    ],
                    tail_a_stride: TILE_K,
                    tail_b: [
                        present(tail, tail_b_at(t0)),
                        present(tail && pair == 2, tail_b_at(t0 + 1)),
                    ],
                    init: [0, 1, 2, 3].map(|c| match c_index(c / 2, c % 2) {
                        None => std::ptr::null(),
                        Some((_, j)) if first => comp_at(t0 + j),
                        Some((i, j)) => acc_at(r + TILE_ROWS * i, t0 + j).cast_const(),
                    }),
                    init_stride: if first { 0 } else { acc_stride },
                    c: [0, 1, 2, 3].map(|c| match c_index(c / 2, c % 2) {
                        None => std::ptr::null_mut(),
                        Some((i, j)) => acc_at(r + TILE_ROWS * i, t0 + j),
                    }),
                    c_stride: acc_stride,
                    shape: usize::from(pair == 2) | (usize::from(row_tiles == 2) << 1),
                };
                // SAFETY: every pointer the block reads or writes covers its tile: A rows
                // rows.start + r .. + 16·row_tiles ≤ a.m() at K bytes < 64·full_chunks ≤
                // row_stride; B quads < 16·full_chunks ≤ k_quads of panels < w.panels(), at
                // column offsets 64·j + 64 ≤ 192; tails and accumulators inside `scratch`;
                // the compensation rows hold NR i32 per panel, read 16 from 16·j. Tiles are
                // configured with TILE_CONFIG (caller's contract).
                unsafe { T::block(&block) };
            }
        }
    }

    for (p, panel) in group.clone().enumerate() {
        for r in (0..n_rows).step_by(TILE_ROWS) {
            // 16 rows per call: the per-call work (column masks, scales, bias) then amortizes;
            // one call per row made the non-GELU epilogue 1.7× slower (vector_side timing).
            // Read in place: copying the 3 KiB of a call's accumulators cost 7 % of MiniLM.
            let acc = &scratch.acc[p * n_rows + r..][..TILE_ROWS];
            // SAFETY: rows rows.start + r .. + 16 and the panel's columns belong to this unit
            // (caller's contract); the store masks the columns past N.
            unsafe { avx512vnni::store::<TILE_ROWS>(job, rows.start + r, panel, |i, j| acc[i][j]) };
        }
    }
}

/// `p` if the tile is present, else null.
fn present<P>(yes: bool, p: *const P) -> *const P {
    if yes { p } else { std::ptr::null() }
}

/// The arguments of one tile block, read by the `asm!` through a pointer (too many for
/// registers). Index `2·i + j` of `init`/`c` is C(i, j): row tile i, column tile j.
#[repr(C)]
struct Block {
    /// First A byte of row tile 0 / 1 at this block's first K chunk; stride `a_stride`.
    a: [*const u8; 2],
    a_stride: usize,
    /// First B byte of column tile 0 / 1 at this block's first K chunk; stride 192.
    b: [*const i8; 2],
    /// K chunks of 64 to run from `a`/`b` (the pointers advance 64 / 3072 bytes per chunk).
    chunks: usize,
    /// 1: one more chunk from the zero-padded tail tiles below.
    tail: usize,
    tail_a: [*const u8; 2],
    tail_a_stride: usize,
    tail_b: [*const i8; 2],
    /// Where each accumulator tile starts from: the compensation (stride 0) or a partial sum.
    init: [*const i32; 4],
    init_stride: usize,
    /// Where each accumulator tile is stored.
    c: [*mut i32; 4],
    c_stride: usize,
    /// Bit 0: a second column tile, bit 1: a second row tile.
    shape: usize,
}

/// The tile instructions: the real ones ([`Asm`]) or, in unit tests, an emulator.
trait TileUnit {
    /// `ldtilecfg`.
    ///
    /// # Safety
    /// The unit must be runnable (AMX permitted); `cfg` must be a valid configuration.
    unsafe fn configure(cfg: &TileConfig);
    /// C(i,j) = load(init) + Σ over the K chunks of A(i)·B(j), then stored to `c`.
    ///
    /// # Safety
    /// Tiles configured with [`TILE_CONFIG`]; every non-null pointer of the present tiles (per
    /// `shape`) readable (writable for `c`) for 16 rows at its stride, 64 bytes a row, at each
    /// chunk's offset.
    unsafe fn block(block: &Block);
    /// `tilerelease`.
    ///
    /// # Safety
    /// The unit must be runnable.
    unsafe fn release();
}

/// Tiles configured for one work unit; releasing them on drop means the 8 KiB tile state is not
/// saved on every context switch once the unit is done, even if it panics.
struct TileSession<T: TileUnit>(PhantomData<T>);

impl<T: TileUnit> TileSession<T> {
    /// # Safety
    /// `T` must be runnable.
    unsafe fn start() -> Self {
        // SAFETY: forwarded; TILE_CONFIG is a valid palette-1 configuration.
        unsafe { T::configure(&TILE_CONFIG) };
        Self(PhantomData)
    }
}

impl<T: TileUnit> Drop for TileSession<T> {
    fn drop(&mut self) {
        // SAFETY: the session exists only after a successful `start`, so `T` is runnable.
        unsafe { T::release() };
    }
}

/// The 64-byte `ldtilecfg` operand.
#[repr(C, align(64))]
struct TileConfig([u8; 64]);

/// Palette 1, all 8 tiles 16 rows × 64 bytes: byte 0 palette, bytes 16 + 2t the bytes per row of
/// tile t (u16), byte 48 + t its rows.
static TILE_CONFIG: TileConfig = {
    let mut cfg = [0u8; 64];
    cfg[0] = 1;
    let mut t = 0;
    while t < 8 {
        cfg[16 + 2 * t] = TILE_K as u8;
        cfg[48 + t] = TILE_ROWS as u8;
        t += 1;
    }
    TileConfig(cfg)
};
