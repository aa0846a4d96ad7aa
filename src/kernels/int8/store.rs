//! The int8 epilogue: s32 accumulator → f32 → scale → bias → activation → residual, and the
//! scalar store every path uses for its ragged edges. The vector paths repeat exactly this
//! sequence of IEEE operations (`simd` for the activation), so all give bit-identical outputs.

use super::{Job, Out};
use crate::kernels::epilogue::Activation;

/// What happens to each accumulator on its way out; all parts are optional.
#[derive(Clone, Copy, Debug, Default)]
pub struct Epilogue<'a> {
    /// Added after scaling, length N.
    pub bias: Option<&'a [f32]>,
    pub activation: Activation,
    /// Added last, M×N with the same row stride as the output.
    pub residual: Option<&'a [f32]>,
}

/// The epilogue for one element; the vector paths replicate exactly this sequence.
#[inline(always)]
pub(crate) fn epilogue_value(
    acc: i32,
    row_scale: f32,
    col_scale: f32,
    bias: Option<f32>,
    activation: Activation,
    residual: Option<f32>,
) -> f32 {
    let mut y = acc as f32 * (row_scale * col_scale);
    if let Some(b) = bias {
        y += b;
    }
    y = activation.activate(y);
    if let Some(r) = residual {
        y += r;
    }
    y
}

/// Writes `acc[i]` (through the epilogue, for an f32 output) to row `m`, column `col0 + i`.
///
/// # Safety
/// `job.out` must be valid for writes of row `m`, columns `col0..col0 + acc.len()` (all `< N`),
/// and no other thread may access those elements meanwhile.
#[inline(always)]
pub(crate) unsafe fn store_scalar(job: &Job, m: usize, col0: usize, acc: &[i32]) {
    let at = m * job.out_stride + col0;
    match job.out {
        Out::I32(out) => {
            for (i, &v) in acc.iter().enumerate() {
                // SAFETY: in bounds and exclusive per this function's contract.
                unsafe { out.add(at + i).write(v) };
            }
        }
        Out::F32(out) | Out::F32Add(out) => {
            let residual = job.residual_ptr();
            let row_scale = job.a.row_scales()[m];
            let col_scales = &job.w.col_scales()[col0..col0 + acc.len()];
            let epi = &job.epilogue;
            for (i, (&v, &col_scale)) in acc.iter().zip(col_scales).enumerate() {
                let y = epilogue_value(
                    v,
                    row_scale,
                    col_scale,
                    epi.bias.map(|b| b[col0 + i]),
                    epi.activation,
                    // SAFETY: the residual covers the output's elements (checked by `gemm`, or
                    // it is the output); element `at + i` is this call's to read.
                    residual.map(|r| unsafe { r.add(at + i).read() }),
                );
                // SAFETY: in bounds and exclusive per this function's contract.
                unsafe { out.add(at + i).write(y) };
            }
        }
    }
}
