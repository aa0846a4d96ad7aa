//! A dense layer with sub-8-bit weights (int4/int6, ternary, binary-coding planes) on the low-bit
//! kernels, and the kernel layout each stored format is packed into.

use std::cell::Cell;

use anyhow::{Result, ensure};

use super::linear::{Linear, LinearKernel, select_bias};
use super::lowbit_matrix::{LowBitFormat, LowBitMatrix};
use crate::kernels::int8::{Activation, Isa, kernel_isa};
use crate::kernels::lowbit::{self, LowBitActivations, PackedLowBit};

/// A dense layer with sub-8-bit weights on the low-bit kernels: `y = xs · Σ_g s_g · (q_g · x_q) + b`.
#[derive(Clone, Debug)]
pub struct LinearLowBit {
    pub packed: PackedLowBit,
    pub bias: Option<Vec<f32>>,
    /// Bits per weight of the scheme (codes and scales), for reports.
    pub bits_per_weight: f64,
    isa: Isa,
}

thread_local! {
    // Activation scratch reused by every layer a thread runs (taken, not borrowed, across rayon).
    static SCRATCH: Cell<LowBitActivations> = Cell::new(LowBitActivations::new());
}

impl LinearLowBit {
    pub fn new(m: &LowBitMatrix, bias: Option<Vec<f32>>) -> Result<Self> {
        ensure!(
            bias.as_ref().is_none_or(|b| b.len() == m.rows),
            "bias length differs from the output size"
        );
        Ok(Self {
            packed: pack_matrix(m),
            bias,
            bits_per_weight: m.format.bits_per_weight(m.cols),
            isa: kernel_isa()?,
        })
    }

    /// `forward` with the activation applied in the kernel (no extra pass).
    pub fn forward_fused(&self, x: &[f32], rows: usize, out: &mut [f32], activation: Activation) {
        let mut qa = SCRATCH.take();
        lowbit::quantize_for(
            self.isa,
            &x[..rows * self.packed.k()],
            rows,
            &self.packed,
            &mut qa,
        );
        let n = self.packed.n();
        lowbit::gemm(
            self.isa,
            &qa,
            &self.packed,
            self.bias.as_deref(),
            activation,
            &mut out[..rows * n],
            n,
        );
        SCRATCH.set(qa);
    }
}

impl LinearKernel for LinearLowBit {
    fn n_out(&self) -> usize {
        self.packed.n()
    }

    fn n_in(&self) -> usize {
        self.packed.k()
    }

    fn bytes(&self) -> usize {
        self.packed.bytes() + self.bias.as_ref().map_or(0, |b| b.len() * 4)
    }

    fn forward(&self, x: &[f32], rows: usize, out: &mut [f32], activation: Activation) {
        self.forward_fused(x, rows, out, activation);
    }

    fn select_outputs(&self, ids: &[u32]) -> Linear {
        Linear::new(Self {
            packed: self.packed.select_outputs(ids),
            bias: select_bias(self.bias.as_deref(), ids),
            bits_per_weight: self.bits_per_weight,
            isa: self.isa,
        })
    }
}

/// The kernel layout of a quantized matrix: unsigned codes of 4 bits (uniform ≤ 4 bits), 6 bits
/// (uniform 5–6 bits: int6 stays 6 bits in memory, three lines per 16 k), 8 bits (uniform 7–8
/// bits), 2 bits (ternary) or 1 bit per plane (bcq).
pub fn pack_matrix(m: &LowBitMatrix) -> PackedLowBit {
    let (storage_bits, mul, group) = match m.format {
        LowBitFormat::Uniform { bits, group } => {
            let storage = match bits {
                ..=4 => 4,
                5 | 6 => 6,
                _ => 8,
            };
            (storage, 1, group)
        }
        LowBitFormat::Ternary => (2, 1, None),
        LowBitFormat::Bcq { .. } => (1, 2, None),
    };
    let unsigned: Vec<u8> = m.codes.iter().map(|&q| m.unsigned_code(q)).collect();
    PackedLowBit::pack(
        storage_bits,
        m.format.offset(),
        mul,
        &unsigned,
        &m.params,
        m.rows,
        m.cols,
        m.format.planes(),
        group,
    )
}
