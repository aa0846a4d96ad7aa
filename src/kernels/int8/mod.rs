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
mod amx;
#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512vnni;
#[cfg(target_arch = "x86_64")]
mod avxvnni;
pub(crate) mod epilogue;
mod pack;
pub mod quantize;
mod scalar;

use std::fmt;
use std::ops::Range;
use std::str::FromStr;

use rayon::prelude::*;

pub use activations::{QuantizedActivations, quantize_activations};
pub use epilogue::{Activation, Epilogue, erf, gelu};
pub use pack::PackedI8Weights;

/// Output columns per packed weight panel: 3 zmm (or 6 ymm) vectors of 16 (8) i32 lanes.
pub(crate) const NR: usize = 48;
/// Rows of the GEMM register tile: 8 rows × 3 vectors = 24 zmm accumulators (of 32 registers).
pub(crate) const MR: usize = 8;
/// Batches up to this many rows use the GEMV schedule: weights are streamed once from memory
/// (software prefetch, K split over two accumulator sets to hide the `vpdpbusd` latency).
pub(crate) const GEMV_MAX_ROWS: usize = 4;
/// Below this many multiply-accumulates a call runs inline: waking a second thread costs more.
const PARALLEL_MIN_MACS: usize = 1 << 18;
/// More work units than threads lets rayon rebalance when another process steals a core.
const UNITS_PER_THREAD: usize = 4;
/// The quantized rows of one M block should stay in L2 (2 MiB/core) while every panel of the
/// block's N range streams past them.
const M_BLOCK_BYTES: usize = 512 * 1024;
const MAX_M_BLOCK_ROWS: usize = 256;
/// Rows of the AMX block (2 row tiles of 16, see amx.rs): the AMX path's M blocks are multiples
/// of it, so only a call's last M mod 16 rows fall back to VNNI.
pub(crate) const AMX_MR: usize = 32;

/// Environment variable that forces an ISA path: `amx`, `avx512vnni`, `avxvnni`, `avx2`, `scalar`
/// or `auto`.
pub const ISA_ENV_VAR: &str = "QUANTSERVE_ISA";

/// An instruction-set path of the int8 kernels, fastest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Isa {
    /// Intel AMX `tdpbusd` on 16×16 tiles for blocks of ≥ 16 rows (amx-tile + amx-int8, the
    /// kernel's tile-data permission, and the AVX-512 VNNI features for the epilogue and for the
    /// rows that do not fill a tile, which run the `Avx512Vnni` code).
    Amx,
    /// 512-bit `vpdpbusd` (avx512f + avx512bw + avx512vnni).
    Avx512Vnni,
    /// 256-bit VEX `vpdpbusd` (avxvnni + avx2 + fma).
    AvxVnni,
    /// `vpmaddubsw` on the low and high nibbles of the activations (avx2 + fma): exact, no s16
    /// saturation.
    Avx2,
    /// Portable Rust.
    Scalar,
}

impl Isa {
    /// Every path, fastest first.
    pub const ALL: [Isa; 5] = [
        Isa::Amx,
        Isa::Avx512Vnni,
        Isa::AvxVnni,
        Isa::Avx2,
        Isa::Scalar,
    ];

    /// The name used by [`ISA_ENV_VAR`] and [`FromStr`].
    pub fn name(self) -> &'static str {
        match self {
            Isa::Amx => "amx",
            Isa::Avx512Vnni => "avx512vnni",
            Isa::AvxVnni => "avxvnni",
            Isa::Avx2 => "avx2",
            Isa::Scalar => "scalar",
        }
    }

    /// The CPU features this path needs, as `is_x86_feature_detected!` names them.
    pub fn required_features(self) -> &'static str {
        match self {
            Isa::Amx => {
                "amx-tile, amx-int8 with tile data permitted (Linux), avx512f, avx512bw, avx512vnni"
            }
            Isa::Avx512Vnni => "avx512f, avx512bw, avx512vnni",
            Isa::AvxVnni => "avxvnni, avx2, fma",
            Isa::Avx2 => "avx2, fma",
            Isa::Scalar => "none",
        }
    }

    /// Whether this CPU can run the path (the detection result is cached by std; for `Amx`,
    /// once per process by amx.rs, which also requests the tile permission and logs the outcome).
    pub fn is_available(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            match self {
                Isa::Amx => amx::usable(),
                Isa::Avx512Vnni => {
                    is_x86_feature_detected!("avx512f")
                        && is_x86_feature_detected!("avx512bw")
                        && is_x86_feature_detected!("avx512vnni")
                }
                Isa::AvxVnni => {
                    is_x86_feature_detected!("avxvnni")
                        && is_x86_feature_detected!("avx2")
                        && is_x86_feature_detected!("fma")
                }
                Isa::Avx2 => is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"),
                Isa::Scalar => true,
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            self == Isa::Scalar
        }
    }

    /// The fastest path this CPU supports, ignoring [`ISA_ENV_VAR`].
    pub fn best_available() -> Isa {
        Isa::ALL
            .into_iter()
            .find(|isa| isa.is_available())
            .unwrap_or(Isa::Scalar)
    }

    /// Every path this CPU supports, fastest first.
    pub fn available() -> Vec<Isa> {
        Isa::ALL
            .into_iter()
            .filter(|isa| isa.is_available())
            .collect()
    }

    /// `Ok(self)` if the CPU supports the path, otherwise an error naming the missing features.
    pub fn ensure_available(self) -> Result<Isa, IsaError> {
        if self.is_available() {
            Ok(self)
        } else {
            Err(IsaError::Unavailable(self))
        }
    }
}

impl fmt::Display for Isa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Isa {
    type Err = IsaError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Isa::ALL
            .into_iter()
            .find(|isa| isa.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| IsaError::Unknown(s.to_string()))
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IsaError {
    #[error(
        "unknown int8 ISA {0:?}: expected one of amx, avx512vnni, avxvnni, avx2, scalar or auto"
    )]
    Unknown(String),
    #[error(
        "int8 ISA {0} was requested but this CPU lacks the features it needs ({features})",
        features = .0.required_features()
    )]
    Unavailable(Isa),
}

/// The path to use for a setting such as a config value or [`ISA_ENV_VAR`]: `None`, `""` or
/// `"auto"` pick the fastest available path; a named path is refused if the CPU lacks it.
pub fn isa_from_setting(setting: Option<&str>) -> Result<Isa, IsaError> {
    match setting.map(str::trim) {
        None | Some("") => Ok(Isa::best_available()),
        Some(s) if s.eq_ignore_ascii_case("auto") => Ok(Isa::best_available()),
        Some(s) => s.parse::<Isa>()?.ensure_available(),
    }
}

/// The path to use, honouring [`ISA_ENV_VAR`]; read on every call, so call it once at start-up.
pub fn detect_isa() -> Result<Isa, IsaError> {
    let setting = std::env::var(ISA_ENV_VAR).ok();
    isa_from_setting(setting.as_deref())
}

/// The kernel path for this process: the best the CPU has, or [`ISA_ENV_VAR`]. Checked once,
/// when the first quantized layer is built, so a bad setting fails at load time, not mid-request.
pub fn kernel_isa() -> anyhow::Result<Isa> {
    static ISA: std::sync::OnceLock<Result<Isa, String>> = std::sync::OnceLock::new();
    ISA.get_or_init(|| detect_isa().map_err(|e| e.to_string()))
        .clone()
        .map_err(|e| anyhow::anyhow!(e))
}

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
    let macs = m * panels * NR * job.w.k_padded();
    let threads = if macs < PARALLEL_MIN_MACS {
        1
    } else {
        rayon::current_num_threads()
    };
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
        (threads * UNITS_PER_THREAD)
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
    let units = m_blocks * panel_chunks;
    if threads <= 1 || units == 1 {
        (0..units).for_each(unit);
    } else {
        (0..units).into_par_iter().with_max_len(1).for_each(unit);
    }
}

/// Computes output rows `rows` × the columns of `panels`.
fn run_unit(isa: Isa, job: &Job, rows: Range<usize>, panels: Range<usize>) {
    debug_assert!(rows.end <= job.a.m() && panels.end <= job.w.panels());
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `gemm`/`gemm_s32` checked that the CPU supports the ISA (for AMX: `usable`,
        // including the tile permission) and that `out` covers every (row, column) of the call;
        // `run` gives each unit disjoint rows × panels.
        Isa::Amx => unsafe { amx::run(job, rows, panels) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        Isa::Avx512Vnni => unsafe { avx512vnni::run(job, rows, panels) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        Isa::AvxVnni => unsafe { avxvnni::run(job, rows, panels) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        Isa::Avx2 => unsafe { avx2::run(job, rows, panels) },
        // SAFETY: as above (the scalar path needs no CPU feature).
        Isa::Scalar => unsafe { scalar::run(job, rows, panels) },
        #[cfg(not(target_arch = "x86_64"))]
        _ => unreachable!("only the scalar path is available on this architecture"),
    }
}
