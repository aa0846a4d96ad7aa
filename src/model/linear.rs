//! A dense layer whose weights may be stored in any supported scheme. Models hold `Linear`s and
//! never care which kernel runs underneath, so a quantized variant swaps only this.

use anyhow::{Result, ensure};

use super::observe::ObservedLinear;
use super::weights::Weight;

use crate::kernels::fp32::LinearF32;
use crate::kernels::ops::Activation;
use crate::quant::int8::LinearInt8;
use crate::quant::lowbit::LinearLowBit;

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

    /// Packs the layer for its scheme.
    pub fn build(self) -> Result<Linear> {
        let Self {
            weight,
            bias,
            n_out,
            n_in,
        } = self;
        Ok(match weight {
            Weight::F32(w) => Linear::f32(w, bias, n_out, n_in),
            Weight::Int8 { codes, scales } => {
                Linear::Int8(LinearInt8::from_codes(&codes, &scales, bias, n_out, n_in)?)
            }
            Weight::LowBit(m) => {
                ensure!(
                    m.rows == n_out && m.cols == n_in,
                    "low-bit layer shape mismatch"
                );
                Linear::LowBit(LinearLowBit::new(&m, bias)?)
            }
            Weight::Tiered(t) => {
                ensure!(
                    t.rows == n_out && t.cols == n_in,
                    "tiered layer shape mismatch"
                );
                let parts = t
                    .tiers
                    .into_iter()
                    .map(|(ids, weight)| {
                        let bias = bias
                            .as_ref()
                            .map(|b| ids.iter().map(|&i| b[i as usize]).collect());
                        let part = LinearParts {
                            weight,
                            bias,
                            n_out: ids.len(),
                            n_in,
                        }
                        .build()?;
                        Ok((part, ids))
                    })
                    .collect::<Result<_>>()?;
                Linear::Tiered(TieredLinear::new(parts, n_out, n_in))
            }
        })
    }
}

/// A layer whose output rows are stored in several parts (the tied output projection of a
/// table with frequency tiers): each part computes its own columns, scattered into place.
#[derive(Clone, Debug)]
pub struct TieredLinear {
    /// `(layer, the output columns it computes)`; every column belongs to exactly one part.
    parts: Vec<(Linear, Vec<u32>)>,
    /// Where each output column lives: (part, index within the part), for `select_outputs`.
    home: Vec<(u32, u32)>,
    n_out: usize,
    n_in: usize,
}

impl TieredLinear {
    fn new(parts: Vec<(Linear, Vec<u32>)>, n_out: usize, n_in: usize) -> Self {
        let mut home = vec![(0, 0); n_out];
        for (p, (_, cols)) in parts.iter().enumerate() {
            for (i, &c) in cols.iter().enumerate() {
                home[c as usize] = (p as u32, i as u32);
            }
        }
        Self {
            parts,
            home,
            n_out,
            n_in,
        }
    }

    fn forward(&self, x: &[f32], rows: usize, out: &mut [f32], activation: Option<Activation>) {
        let mut part_out = Vec::new();
        for (layer, cols) in &self.parts {
            let width = cols.len();
            part_out.clear();
            part_out.resize(rows * width, 0.0);
            match activation {
                Some(a) => layer.forward_activated(x, rows, &mut part_out, a),
                None => layer.forward(x, rows, &mut part_out),
            }
            for (r, y) in part_out.chunks_exact(width.max(1)).enumerate() {
                let dst = &mut out[r * self.n_out..(r + 1) * self.n_out];
                for (&c, &v) in cols.iter().zip(y) {
                    dst[c as usize] = v;
                }
            }
        }
    }

    /// Only the outputs `ids`, in that order: each part keeps its columns among them.
    fn select_outputs(&self, ids: &[u32]) -> Self {
        let mut picked = vec![(Vec::new(), Vec::new()); self.parts.len()];
        for (pos, &id) in ids.iter().enumerate() {
            let (p, i) = self.home[id as usize];
            picked[p as usize].0.push(i);
            picked[p as usize].1.push(pos as u32);
        }
        let parts = self
            .parts
            .iter()
            .zip(picked)
            .filter(|(_, (within, _))| !within.is_empty())
            .map(|((layer, _), (within, positions))| (layer.select_outputs(&within), positions))
            .collect();
        Self::new(parts, ids.len(), self.n_in)
    }

    fn map_parts(&self, f: impl Fn(&Linear) -> Result<Linear>) -> Result<Self> {
        Ok(Self {
            parts: self
                .parts
                .iter()
                .map(|(l, cols)| Ok((f(l)?, cols.clone())))
                .collect::<Result<_>>()?,
            home: self.home.clone(),
            n_out: self.n_out,
            n_in: self.n_in,
        })
    }

    fn bytes(&self) -> usize {
        self.parts
            .iter()
            .map(|(l, cols)| l.bytes() + cols.len() * 4)
            .sum::<usize>()
            + self.home.len() * 8
    }
}

#[derive(Clone, Debug)]
pub enum Linear {
    F32(LinearF32),
    Int8(LinearInt8),
    /// int4/int6 (per channel or group-wise), ternary or binary-coded weights.
    LowBit(LinearLowBit),
    /// Output rows in frequency tiers, each in its own scheme.
    Tiered(TieredLinear),
    /// Any of the above with its per-unit output maxima recorded: calibration only (pruning),
    /// installed by `observe::observe` on a model loaded for that purpose.
    Observed(Box<ObservedLinear>),
}

impl Linear {
    pub fn f32(weight: Vec<f32>, bias: Option<Vec<f32>>, n_out: usize, n_in: usize) -> Self {
        Self::F32(LinearF32::new(weight, bias, n_out, n_in))
    }

    /// `out[rows][n_out] = x[rows][n_in] · Wᵀ + b`.
    pub fn forward(&self, x: &[f32], rows: usize, out: &mut [f32]) {
        match self {
            Self::F32(l) => l.forward(x, rows, out),
            Self::Int8(l) => l.forward(x, rows, out),
            Self::LowBit(l) => l.forward(x, rows, out),
            Self::Tiered(l) => l.forward(x, rows, out, None),
            Self::Observed(o) => {
                o.inner.forward(x, rows, out);
                o.record(out, rows);
            }
        }
    }

    /// `forward` followed by `activation`, fused into the kernel where the scheme supports it.
    pub fn forward_activated(
        &self,
        x: &[f32],
        rows: usize,
        out: &mut [f32],
        activation: Activation,
    ) {
        use crate::kernels::int8::Activation as Fused;
        let fused = match activation {
            Activation::Relu => Some(Fused::Relu),
            Activation::Gelu => Some(Fused::Gelu),
            _ => None,
        };
        match (self, fused) {
            (Self::Int8(l), Some(f)) => l.forward_fused(x, rows, out, f),
            (Self::LowBit(l), Some(f)) => l.forward_fused(x, rows, out, f),
            (Self::Tiered(l), _) => l.forward(x, rows, out, Some(activation)),
            (Self::Observed(o), _) => {
                o.inner.forward_activated(x, rows, out, activation);
                o.record(out, rows);
            }
            _ => {
                self.forward(x, rows, out);
                activation.apply(&mut out[..rows * self.n_out()]);
            }
        }
    }

    pub fn n_out(&self) -> usize {
        match self {
            Self::F32(l) => l.n_out,
            Self::Int8(l) => l.n_out(),
            Self::LowBit(l) => l.n_out(),
            Self::Tiered(l) => l.n_out,
            Self::Observed(o) => o.inner.n_out(),
        }
    }

    pub fn n_in(&self) -> usize {
        match self {
            Self::F32(l) => l.n_in,
            Self::Int8(l) => l.n_in(),
            Self::LowBit(l) => l.n_in(),
            Self::Tiered(l) => l.n_in,
            Self::Observed(o) => o.inner.n_in(),
        }
    }

    pub fn bytes(&self) -> usize {
        match self {
            Self::F32(l) => l.bytes(),
            Self::Int8(l) => l.bytes(),
            Self::LowBit(l) => l.bytes(),
            Self::Tiered(l) => l.bytes(),
            Self::Observed(o) => o.inner.bytes(),
        }
    }

    /// A layer computing only the outputs `ids` (in that order), e.g. a vocabulary shortlist.
    pub fn select_outputs(&self, ids: &[u32]) -> Self {
        match self {
            Self::F32(l) => {
                let weight = ids
                    .iter()
                    .flat_map(|&i| {
                        l.weight[i as usize * l.n_in..(i as usize + 1) * l.n_in]
                            .iter()
                            .copied()
                    })
                    .collect();
                let bias = l
                    .bias
                    .as_ref()
                    .map(|b| ids.iter().map(|&i| b[i as usize]).collect());
                Self::f32(weight, bias, ids.len(), l.n_in)
            }
            Self::Int8(l) => Self::Int8(l.select_outputs(ids)),
            Self::LowBit(l) => Self::LowBit(l.select_outputs(ids)),
            Self::Tiered(l) => Self::Tiered(l.select_outputs(ids)),
            // The selection is a new layer; observation stays with the full one.
            Self::Observed(o) => o.inner.select_outputs(ids),
        }
    }

    /// The same layer with int8 weights (per-output-channel scales); int8 layers stay as they are.
    pub fn to_int8(&self) -> Result<Self> {
        Ok(match self {
            Self::F32(l) => Self::Int8(LinearInt8::quantize(
                &l.weight,
                l.bias.clone(),
                l.n_out,
                l.n_in,
            )?),
            Self::Int8(l) => Self::Int8(l.clone()),
            Self::LowBit(_) => anyhow::bail!("a low-bit layer cannot be converted to int8"),
            Self::Tiered(l) => Self::Tiered(l.map_parts(Self::to_int8)?),
            Self::Observed(o) => o.inner.to_int8()?,
        })
    }

    /// The same layer with weights quantized by `quantize(weight, n_out, n_in)`; only fp32
    /// layers can be converted.
    pub fn to_lowbit(
        &self,
        quantize: impl Fn(&[f32], usize, usize) -> crate::quant::lowbit::LowBitMatrix,
    ) -> Result<Self> {
        match self {
            Self::F32(l) => Ok(Self::LowBit(LinearLowBit::new(
                &quantize(&l.weight, l.n_out, l.n_in),
                l.bias.clone(),
            )?)),
            Self::Observed(o) => o.inner.to_lowbit(quantize),
            _ => anyhow::bail!("only an fp32 layer can be quantized to a low-bit scheme"),
        }
    }

    /// Allocates the output and runs `forward`.
    pub fn apply(&self, x: &[f32], rows: usize) -> Vec<f32> {
        let mut out = vec![0.0; rows * self.n_out()];
        self.forward(x, rows, &mut out);
        out
    }
}
