//! Uniform symmetric int8 (FullyQT / FBGEMM style): one scale per output channel for the weights,
//! dynamic per-token scales for the activations, u8×s8 products on the int8 kernels.

use std::cell::Cell;

use anyhow::Result;

use super::linear::{Linear, LinearKernel, select_bias};
use crate::kernels::int8::{
    Activation, Epilogue, Isa, PackedI8Weights, QuantizedActivations, gemm, gemm_add, kernel_isa,
    quantize::quantize_per_output_channel, quantize_activations,
};

/// A dense layer with int8 weights: `y = dequant(q(x) · W_q) + b`.
#[derive(Clone, Debug)]
pub struct LinearInt8 {
    pub packed: PackedI8Weights,
    pub bias: Option<Vec<f32>>,
    isa: Isa,
}

thread_local! {
    // Quantized activations are scratch: reused by every layer a thread runs.
    static SCRATCH: Cell<QuantizedActivations> = Cell::new(QuantizedActivations::new());
}

impl LinearInt8 {
    /// Quantizes fp32 weights `[n_out][n_in]` per output channel.
    pub fn quantize(
        weight: &[f32],
        bias: Option<Vec<f32>>,
        n_out: usize,
        n_in: usize,
    ) -> Result<Self> {
        let q = quantize_per_output_channel(weight, n_out, n_in);
        Self::from_codes(&q.values, &q.scales, bias, n_out, n_in)
    }

    /// Packs existing codes: `w[n][k] ≈ codes[n][k] · scales[n]`.
    pub fn from_codes(
        codes: &[i8],
        scales: &[f32],
        bias: Option<Vec<f32>>,
        n_out: usize,
        n_in: usize,
    ) -> Result<Self> {
        anyhow::ensure!(
            codes.len() == n_out * n_in && scales.len() == n_out,
            "int8 layer shape mismatch"
        );
        Ok(Self {
            packed: PackedI8Weights::pack(codes, n_out, n_in, scales),
            bias,
            isa: kernel_isa()?,
        })
    }

    /// `forward` with the activation applied in the kernel's epilogue (no extra pass).
    pub fn forward_fused(&self, x: &[f32], rows: usize, out: &mut [f32], activation: Activation) {
        // Take the scratch out instead of borrowing it across `gemm`: while this thread waits on
        // rayon it may run another layer's `forward`, which must not find the cell borrowed.
        let mut qa = SCRATCH.take();
        quantize_activations(self.isa, x, rows, self.packed.k(), &mut qa);
        self.gemm_quantized(&qa, rows, out, activation);
        SCRATCH.set(qa);
    }

    fn gemm_quantized(
        &self,
        qa: &QuantizedActivations,
        rows: usize,
        out: &mut [f32],
        activation: Activation,
    ) {
        let n = self.packed.n();
        assert!(
            qa.m() == rows && qa.k() == self.packed.k(),
            "int8 layer given {}×{} quantized activations for {rows}×{}",
            qa.m(),
            qa.k(),
            self.packed.k()
        );
        let epilogue = Epilogue {
            bias: self.bias.as_deref(),
            activation,
            residual: None,
        };
        gemm(
            self.isa,
            qa,
            &self.packed,
            &epilogue,
            &mut out[..rows * n],
            n,
        );
    }
}

impl LinearKernel for LinearInt8 {
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

    fn int8_activation_isa(&self) -> Option<Isa> {
        Some(self.isa)
    }

    fn forward_quantized(
        &self,
        _x: &[f32],
        qa: &QuantizedActivations,
        rows: usize,
        out: &mut [f32],
        activation: Activation,
    ) {
        self.gemm_quantized(qa, rows, out, activation);
    }

    fn forward_add(&self, x: &[f32], rows: usize, out: &mut [f32]) {
        let n = self.packed.n();
        let mut qa = SCRATCH.take();
        quantize_activations(self.isa, x, rows, self.packed.k(), &mut qa);
        gemm_add(
            self.isa,
            &qa,
            &self.packed,
            self.bias.as_deref(),
            &mut out[..rows * n],
            n,
        );
        SCRATCH.set(qa);
    }

    fn select_outputs(&self, ids: &[u32]) -> Linear {
        Linear::new(Self {
            packed: self.packed.select_outputs(ids),
            bias: select_bias(self.bias.as_deref(), ids),
            isa: self.isa,
        })
    }
}
