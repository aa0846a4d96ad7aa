//! Row-wise fp32 operations shared by the models: layer norm, softmax, log-softmax, argmax
//! (activations: `epilogue::Activation`). They are simple loops the compiler vectorises; the heavy work is in the matmuls.

/// Rows per parallel task of the row operations: enough work to be worth a task.
const ROW_OP_MIN_VALUES: usize = 1 << 14;

/// `Σ f(x)` over `xs` in 16 partial sums (element i into sum i mod 16) reduced pairwise: a
/// fixed order that the compiler can vectorize (a plain sequential sum cannot be, since float
/// addition does not reassociate), the same on every CPU.
#[inline(always)]
fn lane_sum(xs: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut lanes = [0.0f32; 16];
    let chunks = xs.chunks_exact(16);
    let tail = chunks.remainder();
    for chunk in chunks {
        for (l, &x) in lanes.iter_mut().zip(chunk) {
            *l += f(x);
        }
    }
    for (l, &x) in lanes.iter_mut().zip(tail) {
        *l += f(x);
    }
    let mut width = 8;
    while width > 0 {
        for i in 0..width {
            lanes[i] += lanes[i + width];
        }
        width /= 2;
    }
    lanes[0]
}

/// In-place layer normalisation of each `dim`-wide row: `(x − mean)/sqrt(var + eps)·γ + β`,
/// rows split over the current rayon pool when there are many (each row is computed the same way
/// whatever the split).
pub fn layer_norm(x: &mut [f32], dim: usize, gamma: &[f32], beta: &[f32], eps: f32) {
    let norm_row = |row: &mut [f32]| {
        let mean = lane_sum(row, |v| v) / dim as f32;
        let var = lane_sum(row, |v| (v - mean) * (v - mean)) / dim as f32;
        let inv = 1.0 / (var + eps).sqrt();
        for ((v, g), b) in row.iter_mut().zip(gamma).zip(beta) {
            *v = (*v - mean) * inv * g + b;
        }
    };
    let rows_per_task = (ROW_OP_MIN_VALUES / dim.max(1)).max(1);
    if x.len() >= 2 * ROW_OP_MIN_VALUES && crate::kernels::parallel::pool_threads() > 1 {
        use rayon::prelude::*;
        x.par_chunks_mut(rows_per_task * dim)
            .for_each(|rows| rows.chunks_exact_mut(dim).for_each(norm_row));
    } else {
        x.chunks_exact_mut(dim).for_each(norm_row);
    }
}

/// `x += y` element-wise.
pub fn add_in_place(x: &mut [f32], y: &[f32]) {
    x.iter_mut().zip(y).for_each(|(a, b)| *a += b);
}

/// In-place softmax of one row.
pub fn softmax(row: &mut [f32]) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for v in row.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    let inv = 1.0 / sum;
    row.iter_mut().for_each(|v| *v *= inv);
}

/// Logistic sigmoid.
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// Index of the largest value; the lowest index wins ties so results never depend on iteration
/// details.
pub fn argmax(xs: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in xs.iter().enumerate() {
        if v > xs[best] {
            best = i;
        }
    }
    best
}

/// Numerically stable log-softmax of one row, in place.
pub fn log_softmax(row: &mut [f32]) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let lse = row.iter().map(|v| (v - max).exp()).sum::<f32>().ln() + max;
    row.iter_mut().for_each(|v| *v -= lse);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_norm_normalises() {
        let mut x = vec![1.0, 2.0, 3.0, 4.0];
        layer_norm(&mut x, 4, &[1.0; 4], &[0.0; 4], 1e-12);
        let mean: f32 = x.iter().sum::<f32>() / 4.0;
        let var: f32 = x.iter().map(|v| v * v).sum::<f32>() / 4.0;
        assert!(mean.abs() < 1e-6 && (var - 1.0).abs() < 1e-5);
    }

    #[test]
    fn softmax_sums_to_one_and_argmax_takes_the_first() {
        let mut r = vec![1.0, 2.0, 3.0];
        softmax(&mut r);
        assert!((r.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert_eq!(argmax(&[1.0, 3.0, 3.0]), 1);
    }
}
