//! A dense layer whose weights may be stored in any supported form. Models hold `Linear`s and
//! never care which kernel runs underneath, so a quantized variant swaps only this.
//!
//! Each storage form is one implementation of [`LinearKernel`] in its own file (`fp32.rs`,
//! `int8.rs`, `lowbit.rs`, `tiered.rs`); [`LinearParts::build`] is the one place that picks the
//! implementation for a stored [`Weight`].

use std::fmt;
use std::sync::Arc;

use anyhow::{Result, ensure};

use super::fp32::LinearF32;
use super::int8::LinearInt8;
use super::lowbit::LinearLowBit;
use super::scratch::Scratch;
use super::tiered::TieredLinear;
use super::weight::Weight;
use crate::kernels::epilogue::Activation;
use crate::kernels::int8::{Isa, QuantizedActivations};
use crate::kernels::ops::add_in_place;

/// What every storage form of a dense layer `y = act(x · Wᵀ + b)` provides.
pub trait LinearKernel: Send + Sync + fmt::Debug {
    fn n_out(&self) -> usize;
    fn n_in(&self) -> usize;
    /// Bytes of weights (and bias) held.
    fn bytes(&self) -> usize;
    /// `out[rows][n_out] = act(x[rows][n_in] · Wᵀ + b)`, the activation fused into the kernel's
    /// epilogue where the form has one.
    fn forward(&self, x: &[f32], rows: usize, out: &mut [f32], activation: Activation);
    /// A layer computing only the outputs `ids` (in that order), e.g. a vocabulary shortlist.
    fn select_outputs(&self, ids: &[u32]) -> Linear;
    /// The ISA of the int8 kernels if this form multiplies int8 per-token activations
    /// ([`QuantizedActivations`]): a producer that has the rows in cache anyway (the fused layer
    /// norm) then quantizes them for it, and calls [`LinearKernel::forward_quantized`].
    fn int8_activation_isa(&self) -> Option<Isa> {
        None
    }
    /// Whether this is the unquantized f32 form (a model of such layers keeps its attention in
    /// f32 too: it is the reference the quantized variants are measured against).
    fn is_f32(&self) -> bool {
        false
    }
    /// `forward` given `x` already quantized as `forward` would quantize it (`qa`, `rows` × `n_in`).
    /// Only called on forms with an [`LinearKernel::int8_activation_isa`].
    fn forward_quantized(
        &self,
        x: &[f32],
        _qa: &QuantizedActivations,
        rows: usize,
        out: &mut [f32],
        activation: Activation,
    ) {
        self.forward(x, rows, out, activation);
    }
    /// `out[rows][n_out] += x · Wᵀ + b` (a residual connection). Forms whose epilogue can add in
    /// place override this; the sum is the same as computing into a buffer and adding it.
    fn forward_add(&self, x: &[f32], rows: usize, out: &mut [f32]) {
        let n = self.n_out();
        let mut y = Scratch::zeroed(rows * n);
        self.forward(x, rows, &mut y, Activation::None);
        add_in_place(&mut out[..rows * n], &y);
    }
}

/// A dense layer in some storage form; cheap to clone (the weights are shared, never mutated).
#[derive(Clone)]
pub struct Linear(Arc<dyn LinearKernel>);

impl fmt::Debug for Linear {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl Linear {
    pub fn new(kernel: impl LinearKernel + 'static) -> Self {
        Self(Arc::new(kernel))
    }

    pub fn f32(weight: Vec<f32>, bias: Option<Vec<f32>>, n_out: usize, n_in: usize) -> Self {
        Self::new(LinearF32::new(weight, bias, n_out, n_in))
    }

    /// `out[rows][n_out] = x[rows][n_in] · Wᵀ + b`.
    pub fn forward(&self, x: &[f32], rows: usize, out: &mut [f32]) {
        self.0.forward(x, rows, out, Activation::None);
    }

    /// `forward` followed by `activation`, fused into the kernel where the form has an epilogue.
    pub fn forward_activated(
        &self,
        x: &[f32],
        rows: usize,
        out: &mut [f32],
        activation: Activation,
    ) {
        self.0.forward(x, rows, out, activation);
    }

    /// `forward_activated` from `x` and, when the producer made it, its int8 quantization
    /// (see [`Linear::int8_activation_isa`]); the result is the same either way.
    pub fn forward_prequantized(
        &self,
        x: &[f32],
        quantized: Option<&QuantizedActivations>,
        rows: usize,
        out: &mut [f32],
        activation: Activation,
    ) {
        match quantized {
            Some(qa) => self.0.forward_quantized(x, qa, rows, out, activation),
            None => self.0.forward(x, rows, out, activation),
        }
    }

    /// The ISA of the int8 kernels if this layer takes int8 per-token activations.
    pub fn int8_activation_isa(&self) -> Option<Isa> {
        self.0.int8_activation_isa()
    }

    /// Whether this is the unquantized f32 form ([`LinearKernel::is_f32`]).
    pub fn is_f32(&self) -> bool {
        self.0.is_f32()
    }

    pub fn n_out(&self) -> usize {
        self.0.n_out()
    }

    pub fn n_in(&self) -> usize {
        self.0.n_in()
    }

    pub fn bytes(&self) -> usize {
        self.0.bytes()
    }

    /// A layer computing only the outputs `ids` (in that order), e.g. a vocabulary shortlist.
    pub fn select_outputs(&self, ids: &[u32]) -> Self {
        self.0.select_outputs(ids)
    }

    /// `out += x · Wᵀ + b`: the residual connection, fused where the form can.
    pub fn forward_add(&self, x: &[f32], rows: usize, out: &mut [f32]) {
        self.0.forward_add(x, rows, out);
    }

    /// Allocates the output and runs `forward`.
    pub fn apply(&self, x: &[f32], rows: usize) -> Vec<f32> {
        let mut out = vec![0.0; rows * self.n_out()];
        self.forward(x, rows, &mut out);
        out
    }
}

/// Copies `bias[i]` for each selected output `i` (shortlists of biased layers).
pub(crate) fn select_bias(bias: Option<&[f32]>, ids: &[u32]) -> Option<Vec<f32>> {
    bias.map(|b| ids.iter().map(|&i| b[i as usize]).collect())
}

/// A layer's tensors before packing: fuse several (e.g. Q, K, V) with `concat`, then `build`.
pub struct LinearParts {
    pub weight: Weight,
    pub bias: Option<Vec<f32>>,
    pub n_out: usize,
    pub n_in: usize,
}

impl LinearParts {
    /// Stacks layers with the same input along the output dimension (one matmul for all).
    pub fn concat(parts: Vec<LinearParts>) -> Result<Self> {
        let n_in = parts[0].n_in;
        ensure!(
            parts.iter().all(|p| p.n_in == n_in),
            "fused layers differ in input size"
        );
        let n_out = parts.iter().map(|p| p.n_out).sum();
        let bias = if parts.iter().all(|p| p.bias.is_some()) {
            Some(parts.iter().flat_map(|p| p.bias.clone().unwrap()).collect())
        } else {
            ensure!(
                parts.iter().all(|p| p.bias.is_none()),
                "fused layers mix bias and no bias"
            );
            None
        };
        let weight = Weight::concat_rows(parts.into_iter().map(|p| p.weight).collect())?;
        Ok(Self {
            weight,
            bias,
            n_out,
            n_in,
        })
    }

    /// Packs the layer for the kernels of its stored form.
    pub fn build(self) -> Result<Linear> {
        let Self {
            weight,
            bias,
            n_out,
            n_in,
        } = self;
        ensure!(
            weight.has_shape(n_out, n_in),
            "layer shape mismatch: the stored weights are not {n_out}×{n_in}"
        );
        Ok(match weight {
            Weight::F32(w) => Linear::f32(w, bias, n_out, n_in),
            Weight::Int8(m) => Linear::new(LinearInt8::from_codes(
                &m.codes, &m.scales, bias, n_out, n_in,
            )?),
            Weight::LowBit(m) => Linear::new(LinearLowBit::new(&m, bias)?),
            Weight::Tiered(t) => Linear::new(TieredLinear::build(t, bias)?),
        })
    }
}
