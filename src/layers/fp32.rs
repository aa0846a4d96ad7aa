//! fp32 dense layers on the `gemm` crate: the strong baseline every quantized ratio is measured
//! against.

use super::linear::{Linear, LinearKernel, select_bias};
use crate::kernels::epilogue::Activation;
use crate::kernels::fp32::{MatRef, matmul};
use crate::kernels::fp32_rows;

/// A dense layer `y = x · Wᵀ + b` with W stored as [out][in] (the PyTorch / HF layout).
#[derive(Clone, Debug)]
pub struct LinearF32 {
    pub weight: Vec<f32>,
    pub bias: Option<Vec<f32>>,
    pub n_out: usize,
    pub n_in: usize,
}

impl LinearF32 {
    pub fn new(weight: Vec<f32>, bias: Option<Vec<f32>>, n_out: usize, n_in: usize) -> Self {
        assert_eq!(weight.len(), n_out * n_in);
        if let Some(b) = &bias {
            assert_eq!(b.len(), n_out);
        }
        Self {
            weight,
            bias,
            n_out,
            n_in,
        }
    }

    /// `out[rows][n_out] = x[rows][n_in] · Wᵀ + b`.
    pub fn forward_plain(&self, x: &[f32], rows: usize, out: &mut [f32]) {
        debug_assert_eq!(x.len(), rows * self.n_in);
        let out = &mut out[..rows * self.n_out];
        if (2..=fp32_rows::MAX_ROWS).contains(&rows) && fp32_rows::available() {
            // A decoder step's few rows: the `gemm` crate would repack all of W for them (one
            // row goes to its GEMV, which is as fast).
            let (n, k) = (self.n_out, self.n_in);
            fp32_rows::matmul_rows(x, rows, &self.weight, self.bias.as_deref(), n, k, out);
            return;
        }
        let w = MatRef::row_major(&self.weight, self.n_out, self.n_in).t();
        match &self.bias {
            Some(b) => {
                for row in out.chunks_exact_mut(self.n_out) {
                    row.copy_from_slice(b);
                }
                matmul(
                    MatRef::row_major(x, rows, self.n_in),
                    w,
                    out,
                    self.n_out,
                    1.0,
                    true,
                );
            }
            None => matmul(
                MatRef::row_major(x, rows, self.n_in),
                w,
                out,
                self.n_out,
                1.0,
                false,
            ),
        }
    }
}

impl LinearKernel for LinearF32 {
    fn n_out(&self) -> usize {
        self.n_out
    }

    fn is_f32(&self) -> bool {
        true
    }

    fn n_in(&self) -> usize {
        self.n_in
    }

    fn bytes(&self) -> usize {
        (self.weight.len() + self.bias.as_ref().map_or(0, Vec::len)) * 4
    }

    fn forward(&self, x: &[f32], rows: usize, out: &mut [f32], activation: Activation) {
        self.forward_plain(x, rows, out);
        activation.apply(&mut out[..rows * self.n_out]);
    }

    fn select_outputs(&self, ids: &[u32]) -> Linear {
        let n_in = self.n_in;
        let weight = ids
            .iter()
            .flat_map(|&i| {
                self.weight[i as usize * n_in..(i as usize + 1) * n_in]
                    .iter()
                    .copied()
            })
            .collect();
        let bias = select_bias(self.bias.as_deref(), ids);
        Linear::f32(weight, bias, ids.len(), n_in)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_adds_bias() {
        let lin = LinearF32::new(
            vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
            Some(vec![0.5, -0.5]),
            2,
            3,
        );
        let mut out = vec![0.0; 2];
        lin.forward_plain(&[1.0, 1.0, 1.0], 1, &mut out);
        assert_eq!(out, vec![6.5, 14.5]);
    }
}
