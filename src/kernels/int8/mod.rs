//! u8 × s8 → s32 GEMM/GEMV with runtime ISA dispatch and a fused f32 epilogue.
//!
//! `out[m][n] = act(f32(Σ_k x_q[m][k]·w[n][k]) · (row_scale[m] · col_scale[n]) + bias[n]) + residual[m][n]`
//!
//! * Activations are quantized per row at run time (symmetric, `scale = max|x| / 127`) and shifted
//!   by +128 to u8, because `vpdpbusd` multiplies unsigned by signed bytes. The shift adds
//!   `128 · colsum(w)` to every accumulator; [`PackedI8Weights::pack`] precomputes
//!   `−128 · colsum(w)` and the kernels start their accumulators from it, so the inner loop needs
//!   no correction.
//! * Weights are packed once as `[N/48][K/4][48][4]`: one 32-bit lane holds 4 consecutive K values
//!   of one output column, the unit `vpdpbusd` consumes.
//! * Every ISA path computes the same s32 sums (integer addition wraps, so the summation order is
//!   irrelevant) and then runs the same sequence of f32 operations per element, so all paths, and
//!   any batch composition, give bit-identical outputs: a row's result never depends on which other
//!   rows share its batch.
//! * Work is split over N panels and M blocks on the caller's current rayon pool.

mod activations;
#[cfg(target_arch = "x86_64")]
pub(crate) mod amx;
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2;
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512vnni;
#[cfg(target_arch = "x86_64")]
pub(crate) mod avxvnni;
mod pack;
pub mod quantize;
pub(crate) mod scalar;
pub(crate) mod store;

use std::ops::Range;

pub(crate) use activations::quantize_row_portable;
pub use activations::{QuantizedActivations, layer_norm_quantize, quantize_activations};
#[cfg(target_arch = "x86_64")]
pub(crate) use activations::{quantize_row_avx2, quantize_row_avx512};
pub use pack::PackedI8Weights;
pub use store::Epilogue;

pub use crate::kernels::cpu::{
    ISA_ENV_VAR, Isa, IsaError, detect_isa, isa_from_setting, kernel_isa,
};
pub use crate::kernels::epilogue::Activation;
use crate::kernels::parallel;
pub use crate::kernels::simd::{erf, gelu};

/// Output columns per packed weight panel: 3 zmm (or 6 ymm) vectors of 16 (8) i32 lanes.
pub(crate) const NR: usize = 48;
/// Rows of the GEMM register tile: 8 rows × 3 vectors = 24 zmm accumulators (of 32 registers).
pub(crate) const MR: usize = 8;
/// Bytes of one K-quad row of a panel (4 K values × `NR` columns).
pub(crate) const QUAD_BYTES: usize = NR * 4;
/// A single core cannot keep enough DRAM reads in flight on its own (kernels.md §3); requesting
/// the line 4 KiB ahead covers the latency at ~15 GB/s.
#[cfg(target_arch = "x86_64")]
const PREFETCH_DISTANCE: usize = 4096;
/// Batches up to this many rows use the GEMV schedule: weights are streamed once from memory
/// (software prefetch, K split over two accumulator sets to hide the `vpdpbusd` latency).
pub(crate) const GEMV_MAX_ROWS: usize = 4;
/// The quantized rows of one M block should stay in L2 (2 MiB/core) while every panel of the
/// block's N range streams past them.
const M_BLOCK_BYTES: usize = 512 * 1024;
const MAX_M_BLOCK_ROWS: usize = 256;
/// Rows of the AMX block (2 row tiles of 16, see amx.rs): the AMX path's M blocks are multiples
/// of it, so only a call's last M mod 16 rows fall back to VNNI.
pub(crate) const AMX_MR: usize = 32;

/// `out[m][n]` (row stride `out_row_stride`) = epilogue of the s32 product of `a` (M×K) and the
/// packed weights (N×K). `epilogue.residual`, if any, is read with the same row stride as `out`.
///
/// Panics if the CPU lacks `isa`, or on mismatched shapes.
pub fn gemm(
    isa: Isa,
    a: &QuantizedActivations,
    w: &PackedI8Weights,
    epilogue: &Epilogue,
    out: &mut [f32],
    out_row_stride: usize,
) {
    check_shapes(isa, a, w, out.len(), out_row_stride);
    let needed = needed_len(a.m(), w.n(), out_row_stride);
    if let Some(bias) = epilogue.bias {
        assert_eq!(bias.len(), w.n(), "bias length must equal N");
    }
    if let Some(residual) = epilogue.residual {
        assert!(
            residual.len() >= needed,
            "residual holds {} values, M×N with row stride {out_row_stride} needs {needed}",
            residual.len()
        );
    }
    let job = Job {
        a,
        w,
        out: Out::F32(out.as_mut_ptr()),
        out_stride: out_row_stride,
        epilogue: *epilogue,
    };
    run(isa, &job);
}

/// `out[m][n] += x·Wᵀ + bias` (a residual connection): [`gemm`] whose epilogue adds what `out`
/// holds, in the same step and order as an `epilogue.residual` would, so the result is
/// bit-identical to computing into a buffer and adding it.
///
/// Panics if the CPU lacks `isa`, or on mismatched shapes.
pub fn gemm_add(
    isa: Isa,
    a: &QuantizedActivations,
    w: &PackedI8Weights,
    bias: Option<&[f32]>,
    out: &mut [f32],
    out_row_stride: usize,
) {
    check_shapes(isa, a, w, out.len(), out_row_stride);
    if let Some(bias) = bias {
        assert_eq!(bias.len(), w.n(), "bias length must equal N");
    }
    let job = Job {
        a,
        w,
        out: Out::F32Add(out.as_mut_ptr()),
        out_stride: out_row_stride,
        epilogue: Epilogue {
            bias,
            ..Epilogue::default()
        },
    };
    run(isa, &job);
}

/// The raw corrected accumulators `Σ_k (x_q[m][k]) · w[n][k]` (x_q = u8 − 128), row-major M×N with
/// row stride N: what [`gemm`] feeds its epilogue. For tests and diagnostics.
pub fn gemm_s32(isa: Isa, a: &QuantizedActivations, w: &PackedI8Weights, out: &mut [i32]) {
    check_shapes(isa, a, w, out.len(), w.n());
    let job = Job {
        a,
        w,
        out: Out::I32(out.as_mut_ptr()),
        out_stride: w.n(),
        epilogue: Epilogue::default(),
    };
    run(isa, &job);
}

/// Plain triple loop over the unpacked weights (row-major `[n][k]` i8), independent of the
/// packing and of the kernels: the reference the tests compare every path against.
pub fn gemm_s32_reference(a: &QuantizedActivations, w: &[i8], n: usize) -> Vec<i32> {
    let (m, k) = (a.m(), a.k());
    assert_eq!(w.len(), n * k, "weights must be N×K");
    let mut out = vec![0i32; m * n];
    for (row, out_row) in out.chunks_exact_mut(n.max(1)).enumerate().take(m) {
        let x = &a.row(row)[..k];
        for (col, o) in out_row.iter_mut().enumerate() {
            let w_col = &w[col * k..(col + 1) * k];
            *o = x.iter().zip(w_col).fold(0i32, |acc, (&xu, &wv)| {
                acc.wrapping_add((i32::from(xu) - 128) * i32::from(wv))
            });
        }
    }
    out
}

fn needed_len(m: usize, n: usize, stride: usize) -> usize {
    if m == 0 { 0 } else { (m - 1) * stride + n }
}

fn check_shapes(
    isa: Isa,
    a: &QuantizedActivations,
    w: &PackedI8Weights,
    out_len: usize,
    stride: usize,
) {
    if let Err(e) = isa.ensure_available() {
        panic!("{e}");
    }
    assert_eq!(
        a.k(),
        w.k(),
        "activations have K={}, weights K={}",
        a.k(),
        w.k()
    );
    assert!(stride >= w.n(), "output row stride {stride} < N={}", w.n());
    let needed = needed_len(a.m(), w.n(), stride);
    assert!(
        out_len >= needed,
        "output holds {out_len} values, M={}×N={} with row stride {stride} needs {needed}",
        a.m(),
        w.n()
    );
}

/// Where a kernel writes its results.
#[derive(Clone, Copy)]
pub(crate) enum Out {
    F32(*mut f32),
    /// f32, each value added to what the output holds (the residual is the output itself).
    F32Add(*mut f32),
    I32(*mut i32),
}

/// One call's operands, shared read-only by every work unit.
pub(crate) struct Job<'a> {
    pub(crate) a: &'a QuantizedActivations,
    pub(crate) w: &'a PackedI8Weights,
    pub(crate) out: Out,
    pub(crate) out_stride: usize,
    pub(crate) epilogue: Epilogue<'a>,
}

/// What a register tile of `rows` rows from `m0` against one panel reads, for the vector paths.
#[cfg(target_arch = "x86_64")]
pub(crate) struct TileOperands<'a> {
    pub(crate) k_quads: usize,
    /// The first activation row of the tile, rows `a_stride` bytes apart.
    pub(crate) a: *const u8,
    pub(crate) a_stride: usize,
    /// The panel's packed weights, `k_quads` rows of `NR · 4` bytes.
    pub(crate) b: *const i8,
    /// The panel's `−128 · colsum` start values, `NR` i32.
    pub(crate) compensation: &'a [i32],
}

#[cfg(target_arch = "x86_64")]
impl Job<'_> {
    #[inline]
    pub(crate) fn tile_operands(&self, m0: usize, rows: usize, panel: usize) -> TileOperands<'_> {
        let a_stride = self.a.row_stride();
        TileOperands {
            k_quads: self.w.k_quads(),
            a: self.a.data()[m0 * a_stride..(m0 + rows) * a_stride].as_ptr(),
            a_stride,
            b: self.w.panel_ptr(panel),
            compensation: self.w.panel_compensation(panel),
        }
    }
}

/// The weights of K-quad `quad` of the panel at `b`, and with `PREFETCH` (weights streamed from
/// memory) a prefetch of the line `PREFETCH_DISTANCE` ahead of each of its lines.
///
/// # Safety
/// `b` must point into a panel of more than `quad` quads. The prefetch address may lie past the
/// end of the weights, which is harmless (prefetches never fault; computed with wrapping_add).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) unsafe fn quad_weights<const PREFETCH: bool>(b: *const i8, quad: usize) -> *const i8 {
    // SAFETY: inside the panel per the contract.
    let bq = unsafe { b.add(quad * QUAD_BYTES) };
    if PREFETCH {
        for line in 0..QUAD_BYTES / 64 {
            // SAFETY: a prefetch never faults.
            unsafe {
                std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                    bq.wrapping_add(PREFETCH_DISTANCE + 64 * line),
                )
            };
        }
    }
    bq
}

/// Accumulates every K-quad of a register tile (`TileOperands` `$t`) with
/// `$step(acc, a, a_stride, b, quad)`; with `$split`, the odd quads go to `$acc_odd` (a second
/// accumulator set: with few rows, one set gives too few independent `vpdpbusd` chains to cover
/// its latency; integer sums do not depend on the order). The caller adds `$acc_odd` in. A
/// `$hook` (an `FnMut(quad)`) runs before each quad's step (a prefetch).
#[cfg(target_arch = "x86_64")]
macro_rules! accumulate_quads {
    ($t:expr, $split:expr, $step:expr, $acc:ident, $acc_odd:ident) => {
        accumulate_quads!($t, $split, $step, $acc, $acc_odd, |_quad: usize| {})
    };
    ($t:expr, $split:expr, $step:expr, $acc:ident, $acc_odd:ident, $hook:expr) => {{
        let t = &$t;
        #[allow(unused_mut)]
        let mut hook = $hook;
        let mut quad = 0;
        if $split {
            while quad + 2 <= t.k_quads {
                hook(quad);
                hook(quad + 1);
                // SAFETY: quad + 1 < k_quads, so the A reads stay inside the tile's rows (row
                // stride 4·k_quads) and the B reads inside the panel (k_quads × QUAD_BYTES).
                unsafe {
                    $step(&mut $acc, t.a, t.a_stride, t.b, quad);
                    $step(&mut $acc_odd, t.a, t.a_stride, t.b, quad + 1);
                }
                quad += 2;
            }
        }
        while quad < t.k_quads {
            hook(quad);
            // SAFETY: as above, quad < k_quads.
            unsafe { $step(&mut $acc, t.a, t.a_stride, t.b, quad) };
            quad += 1;
        }
    }};
}
#[cfg(target_arch = "x86_64")]
pub(crate) use accumulate_quads;

impl Job<'_> {
    /// Where the epilogue's residual is read: the residual slice, or the output itself.
    #[inline(always)]
    pub(crate) fn residual_ptr(&self) -> Option<*const f32> {
        match (self.epilogue.residual, self.out) {
            (Some(r), _) => Some(r.as_ptr()),
            (None, Out::F32Add(out)) => Some(out.cast_const()),
            _ => None,
        }
    }
}

// SAFETY: the only non-Sync member is the output pointer. `run` hands every work unit a disjoint
// set of (row, column) output elements, and the `&mut` borrow in `gemm`/`gemm_s32` keeps anyone
// else from touching the buffer until all units have finished.
unsafe impl Sync for Job<'_> {}

/// Splits the call into work units (M blocks × runs of N panels) and runs them on the current
/// rayon pool, or in order on the calling thread when the pool has one thread or the call is
/// small. The split never changes a result: every output element is computed by exactly one
/// unit, with the same integer sum and the same epilogue.
fn run(isa: Isa, job: &Job) {
    let m = job.a.m();
    let panels = job.w.panels();
    if m == 0 || panels == 0 {
        return;
    }
    let threads = parallel::threads_for(m * panels * NR * job.w.k_padded());
    // AMX: whole 32-row blocks per M block, and panels in pairs (amx.rs works on 2-panel groups).
    let (row_align, panel_align) = if isa == Isa::Amx {
        (AMX_MR, 2)
    } else {
        (MR, 1)
    };
    let m_block = if m <= GEMV_MAX_ROWS {
        m
    } else {
        let fit = (M_BLOCK_BYTES / job.w.k_padded().max(1)) / row_align * row_align;
        fit.clamp(row_align, MAX_M_BLOCK_ROWS)
    };
    let m_blocks = m.div_ceil(m_block);
    let panel_chunks = if threads <= 1 {
        1
    } else {
        parallel::units_for(threads)
            .div_ceil(m_blocks)
            .clamp(1, panels)
    };
    let panels_per_chunk = panels.div_ceil(panel_chunks).next_multiple_of(panel_align);
    let panel_chunks = panels.div_ceil(panels_per_chunk);
    let unit = |unit: usize| {
        let (mb, pc) = (unit / panel_chunks, unit % panel_chunks);
        let rows = mb * m_block..((mb + 1) * m_block).min(m);
        let cols = pc * panels_per_chunk..((pc + 1) * panels_per_chunk).min(panels);
        run_unit(isa, job, rows, cols);
    };
    parallel::run_units(m_blocks * panel_chunks, threads, unit);
}

/// Computes output rows `rows` × the columns of `panels`.
fn run_unit(isa: Isa, job: &Job, rows: Range<usize>, panels: Range<usize>) {
    debug_assert!(rows.end <= job.a.m() && panels.end <= job.w.panels());
    // SAFETY: `gemm`/`gemm_s32` checked that the CPU supports the ISA (for AMX: `usable`,
    // including the tile permission) and that `out` covers every (row, column) of the call;
    // `run` gives each unit disjoint rows × panels.
    unsafe { (isa.kernels().int8_unit)(job, rows, panels) }
}
