//! fp32 matrix multiplication on the `gemm` crate.
//!
//! The fp32 path is the reference every quantized variant is compared with, so it runs on a strong,
//! well-kept GEMM rather than a naive loop: fp32-vs-int8 ratios are then honest.

use gemm::Parallelism;

/// Threads available to one matmul: the size of the rayon pool the caller runs in.
fn parallelism() -> Parallelism {
    match crate::kernels::parallel::pool_threads() {
        0 | 1 => Parallelism::None,
        n => Parallelism::Rayon(n),
    }
}

/// A strided read-only matrix view: element (r, c) lives at `data[r * row_stride + c * col_stride]`.
#[derive(Clone, Copy)]
pub struct MatRef<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    pub row_stride: usize,
    pub col_stride: usize,
}

impl<'a> MatRef<'a> {
    /// A dense row-major matrix.
    pub fn row_major(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            row_stride: cols,
            col_stride: 1,
        }
    }

    /// The transpose view (no copy).
    pub fn t(self) -> Self {
        Self {
            data: self.data,
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
        }
    }

    fn max_index(&self) -> usize {
        if self.rows == 0 || self.cols == 0 {
            0
        } else {
            (self.rows - 1) * self.row_stride + (self.cols - 1) * self.col_stride
        }
    }
}

/// `out[m][n] (row stride out_stride) = (accumulate ? out : 0) + alpha * a · b`.
///
/// Panics if a view reaches outside its slice (a programming error, not an input error).
pub fn matmul(
    a: MatRef,
    b: MatRef,
    out: &mut [f32],
    out_stride: usize,
    alpha: f32,
    accumulate: bool,
) {
    assert_eq!(a.cols, b.rows, "inner dimensions differ");
    let (m, k, n) = (a.rows, a.cols, b.cols);
    if m == 0 || n == 0 {
        return;
    }
    assert!(a.max_index() < a.data.len().max(1) || k == 0);
    assert!(b.max_index() < b.data.len().max(1) || k == 0);
    assert!((m - 1) * out_stride + n <= out.len(), "output too small");
    assert!(out_stride >= n);
    // SAFETY: the asserts above check that every element the views address lies inside its slice,
    // and `out` does not alias `a` or `b` (it is a unique borrow).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            out_stride as isize,
            accumulate,
            a.data.as_ptr(),
            a.col_stride as isize,
            a.row_stride as isize,
            b.data.as_ptr(),
            b.col_stride as isize,
            b.row_stride as isize,
            1.0,
            alpha,
            false,
            false,
            false,
            parallelism(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
            }
        }
        c
    }

    #[test]
    fn matmul_matches_naive_including_transposed_views() {
        let (m, k, n) = (5, 7, 3);
        let a: Vec<f32> = (0..m * k).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i as f32 * 0.11).cos()).collect();
        let want = naive(&a, &b, m, k, n);
        let mut got = vec![0.0; m * n];
        matmul(
            MatRef::row_major(&a, m, k),
            MatRef::row_major(&b, k, n),
            &mut got,
            n,
            1.0,
            false,
        );
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() < 1e-5);
        }
        // b stored transposed ([n][k]) and viewed through t().
        let bt: Vec<f32> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect();
        let mut got2 = vec![0.0; m * n];
        matmul(
            MatRef::row_major(&a, m, k),
            MatRef::row_major(&bt, n, k).t(),
            &mut got2,
            n,
            1.0,
            false,
        );
        for (g, w) in got2.iter().zip(&want) {
            assert!((g - w).abs() < 1e-5);
        }
    }
}
