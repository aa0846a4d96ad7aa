//! Row-wise fp32 operations shared by the models: layer norm, softmax, log-softmax, argmax
//! (activations: `epilogue::Activation`). They are simple loops the compiler vectorises; the heavy work is in the matmuls.

/// Rows per parallel task of the row operations: enough work to be worth a task.
const ROW_OP_MIN_VALUES: usize = 1 << 14;

/// How a row operation over `values` values in rows of `dim` splits over the current rayon pool:
/// `Some(rows per task)` when there is work for two tasks and more than one thread, else `None`
/// (run on this thread). Each row is computed the same way whatever the split.
pub(crate) fn rows_per_task(values: usize, dim: usize) -> Option<usize> {
    (values >= 2 * ROW_OP_MIN_VALUES && crate::kernels::parallel::pool_threads() > 1)
        .then(|| (ROW_OP_MIN_VALUES / dim.max(1)).max(1))
}

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
    if let Some(rows_per_task) = rows_per_task(x.len(), dim) {
        use rayon::prelude::*;
        x.par_chunks_mut(rows_per_task * dim)
            .for_each(|rows| norm_rows(rows, dim, gamma, beta, eps));
    } else {
        norm_rows(x, dim, gamma, beta, eps);
    }
}

/// [`layer_norm`] of `rows` on this thread, compiled for the widest vector unit the CPU has
/// (the portable build targets SSE2 only, and this loop was 4.5 % of MiniLM on AMX). The code is
/// the same plain multiplies and adds in the same order on every width (Rust never fuses or
/// reorders them), so every CPU gets the same bits.
pub(crate) fn norm_rows(rows: &mut [f32], dim: usize, gamma: &[f32], beta: &[f32], eps: f32) {
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU supports avx512f, all this function enables.
            return unsafe { norm_rows_avx512(rows, dim, gamma, beta, eps) };
        }
        if is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports avx2, all this function enables.
            return unsafe { norm_rows_avx2(rows, dim, gamma, beta, eps) };
        }
    }
    norm_rows_portable(rows, dim, gamma, beta, eps);
}

/// # Safety
/// The CPU must support avx512f.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn norm_rows_avx512(rows: &mut [f32], dim: usize, gamma: &[f32], beta: &[f32], eps: f32) {
    norm_rows_portable(rows, dim, gamma, beta, eps);
}

/// # Safety
/// The CPU must support avx2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn norm_rows_avx2(rows: &mut [f32], dim: usize, gamma: &[f32], beta: &[f32], eps: f32) {
    norm_rows_portable(rows, dim, gamma, beta, eps);
}

#[inline(always)]
fn norm_rows_portable(rows: &mut [f32], dim: usize, gamma: &[f32], beta: &[f32], eps: f32) {
    for row in rows.chunks_exact_mut(dim) {
        let mean = lane_sum(row, |v| v) / dim as f32;
        let var = lane_sum(row, |v| (v - mean) * (v - mean)) / dim as f32;
        let inv = 1.0 / (var + eps).sqrt();
        for ((v, g), b) in row.iter_mut().zip(gamma).zip(beta) {
            *v = (*v - mean) * inv * g + b;
        }
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
/// details. NaNs are never the largest (unless the first value is NaN: then 0, as a scan that
/// keeps the first strictly greater value gives).
///
/// Two passes that the compiler vectorizes (the maximum, then the first index holding it): a
/// scan comparing each value with the best so far is one dependent load and branch per value,
/// 4 % of greedy decoding over a 58k vocabulary in `perf`.
pub fn argmax(xs: &[f32]) -> usize {
    const BLOCK: usize = 64;
    match xs.first() {
        None => return 0,
        Some(x) if x.is_nan() => return 0,
        _ => {}
    }
    // `f32::max` ignores NaNs; equal zeros of either sign compare equal below, as in a scan.
    let max = xs.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let block = xs
        .chunks(BLOCK)
        .position(|b| b.iter().fold(false, |hit, &x| hit | (x == max)))
        .unwrap_or(0);
    block * BLOCK
        + xs[block * BLOCK..]
            .iter()
            .position(|&x| x == max)
            .unwrap_or(0)
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
    use proptest::prelude::*;

    /// The definition: keep the first value strictly greater than the best so far.
    fn argmax_scan(xs: &[f32]) -> usize {
        let mut best = 0;
        for (i, &v) in xs.iter().enumerate() {
            if v > xs[best] {
                best = i;
            }
        }
        best
    }

    proptest! {
        #[test]
        fn argmax_equals_the_scan(
            xs in proptest::collection::vec(
                prop_oneof![
                    -4i8..4i8,
                    Just(i8::MIN), // NaN
                    Just(i8::MAX), // +inf
                    Just(i8::MIN + 1), // -0.0
                ],
                1..300,
            ),
        ) {
            let xs: Vec<f32> = xs
                .iter()
                .map(|&v| match v {
                    i8::MIN => f32::NAN,
                    i8::MAX => f32::INFINITY,
                    -127 => -0.0,
                    v => v as f32,
                })
                .collect();
            prop_assert_eq!(argmax(&xs), argmax_scan(&xs));
        }
    }

    #[test]
    fn layer_norm_normalises() {
        let mut x = vec![1.0, 2.0, 3.0, 4.0];
        layer_norm(&mut x, 4, &[1.0; 4], &[0.0; 4], 1e-12);
        let mean: f32 = x.iter().sum::<f32>() / 4.0;
        let var: f32 = x.iter().map(|v| v * v).sum::<f32>() / 4.0;
        assert!(mean.abs() < 1e-6 && (var - 1.0).abs() < 1e-5);
    }

    /// The vector builds of the layer norm give the portable (SSE2) build's bits, on dims with
    /// and without a ragged tail of the 16 partial sums.
    #[test]
    fn layer_norm_is_the_same_on_every_width() {
        for dim in [384, 768, 37] {
            let mut state = 0x9e37_79b9_u32;
            let mut next = || {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                (state as f32 / u32::MAX as f32 - 0.5) * 8.0
            };
            let x: Vec<f32> = (0..dim * 5).map(|_| next()).collect();
            let gamma: Vec<f32> = (0..dim).map(|_| next()).collect();
            let beta: Vec<f32> = (0..dim).map(|_| next()).collect();
            let mut portable = x.clone();
            norm_rows_portable(&mut portable, dim, &gamma, &beta, 1e-12);
            let mut dispatched = x.clone();
            norm_rows(&mut dispatched, dim, &gamma, &beta, 1e-12);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&dispatched), bits(&portable), "dim {dim}");
            #[cfg(target_arch = "x86_64")]
            if is_x86_feature_detected!("avx2") {
                let mut avx2 = x.clone();
                // SAFETY: the CPU supports avx2 (checked above).
                unsafe { norm_rows_avx2(&mut avx2, dim, &gamma, &beta, 1e-12) };
                assert_eq!(bits(&avx2), bits(&portable), "dim {dim} avx2");
            }
        }
    }

    #[test]
    fn softmax_sums_to_one_and_argmax_takes_the_first() {
        let mut r = vec![1.0, 2.0, 3.0];
        softmax(&mut r);
        assert!((r.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert_eq!(argmax(&[1.0, 3.0, 3.0]), 1);
        assert_eq!(argmax(&[]), 0);
        assert_eq!(argmax(&[f32::NAN, 5.0]), 0);
        assert_eq!(argmax(&[f32::NEG_INFINITY, f32::NEG_INFINITY]), 0);
    }
}
