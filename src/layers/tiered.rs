//! A layer whose output rows are stored in several parts (the tied output projection of a table
//! with frequency tiers): each part computes its own columns, scattered into place.

use anyhow::Result;

use super::linear::{Linear, LinearKernel, LinearParts, select_bias};
use super::weight::TieredWeight;
use crate::kernels::epilogue::Activation;

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
    /// Each tier becomes a layer of its own, with the bias of its rows.
    pub fn build(t: TieredWeight, bias: Option<Vec<f32>>) -> Result<Self> {
        let (n_out, n_in) = (t.rows, t.cols);
        let parts = t
            .tiers
            .into_iter()
            .map(|(ids, weight)| {
                let part = LinearParts {
                    weight,
                    bias: select_bias(bias.as_deref(), &ids),
                    n_out: ids.len(),
                    n_in,
                }
                .build()?;
                Ok((part, ids))
            })
            .collect::<Result<_>>()?;
        Ok(Self::new(parts, n_out, n_in))
    }

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
}

impl LinearKernel for TieredLinear {
    fn n_out(&self) -> usize {
        self.n_out
    }

    fn n_in(&self) -> usize {
        self.n_in
    }

    fn bytes(&self) -> usize {
        self.parts
            .iter()
            .map(|(l, cols)| l.bytes() + cols.len() * 4)
            .sum::<usize>()
            + self.home.len() * 8
    }

    fn forward(&self, x: &[f32], rows: usize, out: &mut [f32], activation: Activation) {
        let mut part_out = Vec::new();
        for (layer, cols) in &self.parts {
            let width = cols.len();
            part_out.clear();
            part_out.resize(rows * width, 0.0);
            layer.forward_activated(x, rows, &mut part_out, activation);
            for (r, y) in part_out.chunks_exact(width.max(1)).enumerate() {
                let dst = &mut out[r * self.n_out..(r + 1) * self.n_out];
                for (&c, &v) in cols.iter().zip(y) {
                    dst[c as usize] = v;
                }
            }
        }
    }

    /// Only the outputs `ids`, in that order: each part keeps its columns among them.
    fn select_outputs(&self, ids: &[u32]) -> Linear {
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
        Linear::new(Self::new(parts, ids.len(), self.n_in))
    }
}
