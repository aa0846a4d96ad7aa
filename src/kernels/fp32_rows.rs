//! fp32 `x · Wᵀ` for a few rows of `x`, straight from the row-major `[n_out][n_in]` weights.
//!
//! The `gemm` crate packs its right-hand side on every call. For a large batch that is amortised,
//! but a decoder step multiplies 1–32 rows by the whole layer: `perf` showed the packing at 55 %
//! of fp32 translation, which made fp32 decoding no faster at batch 16 than at batch 1, and the
//! server's 5 % fp32 shadow traffic cost a third of its CPU. This kernel reads the weights where
//! they lie: each output is a dot product over K, 4 rows × 4 outputs at a time in 16 vector
//! accumulators, reduced together in one shuffle tree.
//!
//! fp32 is the reference side of every comparison, not part of the int8 bit-identity contract:
//! the sums are in a different order from the `gemm` crate's (tests bound the difference).

/// Rows of `x` up to which [`LinearF32`](crate::layers::fp32::LinearF32) uses this kernel (from 2:
/// one row is the `gemm` crate's GEMV) when the CPU has AVX-512: 1.2–24× the `gemm` crate at
/// M = 4…64, 0.9× at M = 1 and 0.9–1.5× at 128 on Zen 4
/// (`QUANTSERVE_FP32_ROWS_ONLY=1 cargo bench --bench gemm_int8`).
pub const MAX_ROWS: usize = 64;

/// Whether this CPU runs the kernel.
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `out[m][n] = Σ_k x[m][k] · w[n][k] + bias[n]` for `m < rows`, output row stride `n_out`.
/// Work is split over blocks of outputs on the caller's rayon pool.
///
/// Panics if the CPU lacks AVX-512 or on mismatched lengths.
pub fn matmul_rows(
    x: &[f32],
    rows: usize,
    w: &[f32],
    bias: Option<&[f32]>,
    n_out: usize,
    n_in: usize,
    out: &mut [f32],
) {
    assert!(available(), "fp32_rows::matmul_rows needs AVX-512");
    assert_eq!(x.len(), rows * n_in, "x must be rows × n_in");
    assert_eq!(w.len(), n_out * n_in, "w must be n_out × n_in");
    assert!(out.len() >= rows * n_out, "out must hold rows × n_out");
    if let Some(b) = bias {
        assert_eq!(b.len(), n_out, "bias must hold n_out values");
    }
    if rows == 0 || n_out == 0 {
        return;
    }
    #[cfg(target_arch = "x86_64")]
    {
        use super::parallel::{SendPtr, run_units, threads_for, units_for};
        let threads = threads_for(rows * n_out * n_in);
        // Output blocks of a multiple of 16 columns, a few per thread.
        let blocks = units_for(threads).min(n_out.div_ceil(16)).max(1);
        let cols_per_block = n_out.div_ceil(blocks).next_multiple_of(16);
        let blocks = n_out.div_ceil(cols_per_block);
        let out_ptr = SendPtr(out.as_mut_ptr());
        run_units(blocks, threads, |block| {
            let cols = block * cols_per_block..((block + 1) * cols_per_block).min(n_out);
            // The whole `SendPtr` (not its raw field) is what the closure captures: it is Sync.
            let base = out_ptr;
            // SAFETY: the CPU has AVX-512 (asserted above); the lengths were checked above; each
            // unit writes only its own columns `cols` of the `rows` output rows.
            unsafe { avx512::columns(x, rows, w, bias, n_out, n_in, cols, base.0) };
        });
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;
    use std::ops::Range;

    use crate::kernels::simd::avx512::reduce16;

    /// Output columns `cols` of every row, in register blocks of R rows × C outputs (R·C = 16
    /// accumulators): 4 × 4 normally, 2 × 8 or 1 × 16 for the last rows (a lone decoder step
    /// would otherwise compute four copies of its row).
    ///
    /// # Safety
    /// AVX-512F; `x` is rows × n_in, `w` n_out × n_in, `bias` (if any) n_out long, `out` valid
    /// for writes of rows × n_out floats, of which the columns `cols` (within 0..n_out) are this
    /// call's alone.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn columns(
        x: &[f32],
        rows: usize,
        w: &[f32],
        bias: Option<&[f32]>,
        n_out: usize,
        n_in: usize,
        cols: Range<usize>,
        out: *mut f32,
    ) {
        // Tiles of 16 columns outside, rows inside: a tile's weight rows (16 × n_in floats) stay
        // in L1 while every row block uses them, so W streams from memory once per call.
        let mut t0 = cols.start;
        while t0 < cols.end {
            let tile = t0..(t0 + 16).min(cols.end);
            let mut m0 = 0;
            while m0 < rows {
                // SAFETY: forwarded contract.
                m0 += unsafe {
                    match rows - m0 {
                        1 => rows_block::<1, 16>(x, m0, 1, w, bias, n_out, n_in, &tile, out),
                        2 => rows_block::<2, 8>(x, m0, 2, w, bias, n_out, n_in, &tile, out),
                        left => {
                            rows_block::<4, 4>(x, m0, left.min(4), w, bias, n_out, n_in, &tile, out)
                        }
                    }
                };
            }
            t0 += 16;
        }
    }

    /// Rows `m0 .. m0 + mr` (mr ≤ R) × columns `cols`; returns `mr`.
    ///
    /// # Safety
    /// As [`columns`]; `m0 + mr ≤ rows`.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn rows_block<const R: usize, const C: usize>(
        x: &[f32],
        m0: usize,
        mr: usize,
        w: &[f32],
        bias: Option<&[f32]>,
        n_out: usize,
        n_in: usize,
        cols: &Range<usize>,
        out: *mut f32,
    ) -> usize {
        // Rows past `mr` repeat the last one (computed, never stored).
        let x_rows: [*const f32; R] =
            std::array::from_fn(|r| x[(m0 + r.min(mr - 1)) * n_in..][..n_in].as_ptr());
        let mut n0 = cols.start;
        while n0 < cols.end {
            let nc = (cols.end - n0).min(C);
            let w_rows: [*const f32; C] =
                std::array::from_fn(|j| w[(n0 + j.min(nc - 1)) * n_in..][..n_in].as_ptr());
            // SAFETY: every pointer starts a full row of n_in floats (checked slices above).
            let sums = unsafe { block::<R, C>(x_rows, w_rows, n_in) };
            let mut lanes = [0.0f32; 16];
            // SAFETY: `lanes` holds 16 floats.
            unsafe { _mm512_storeu_ps(lanes.as_mut_ptr(), sums) };
            for r in 0..mr {
                for j in 0..nc {
                    let n = n0 + j;
                    let v = lanes[r * C + j] + bias.map_or(0.0, |b| b[n]);
                    // SAFETY: (m0 + r, n) is inside the output and n is in this call's columns.
                    unsafe { out.add((m0 + r) * n_out + n).write(v) };
                }
            }
            n0 += C;
        }
        mr
    }

    /// Lane `r·C + j` = `Σ_k x_r[k] · w_j[k]`.
    ///
    /// # Safety
    /// AVX-512F; every pointer addresses `k` readable floats.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn block<const R: usize, const C: usize>(
        x: [*const f32; R],
        w: [*const f32; C],
        k: usize,
    ) -> __m512 {
        let mut acc = [[_mm512_setzero_ps(); C]; R];
        let mut k0 = 0;
        while k0 < k {
            let mask: __mmask16 = if k - k0 >= 16 {
                !0
            } else {
                (1u16 << (k - k0)) - 1
            };
            // SAFETY: lanes k0.. below k are inside every row; masked lanes are not read.
            let wv: [__m512; C] =
                std::array::from_fn(|j| unsafe { _mm512_maskz_loadu_ps(mask, w[j].add(k0)) });
            for (acc_r, &xr) in acc.iter_mut().zip(&x) {
                // SAFETY: as above.
                let xv = unsafe { _mm512_maskz_loadu_ps(mask, xr.add(k0)) };
                for (a, &wj) in acc_r.iter_mut().zip(&wv) {
                    *a = _mm512_fmadd_ps(xv, wj, *a);
                }
            }
            k0 += 16;
        }
        let v: [__m512; 16] = std::array::from_fn(|i| acc[i / C][i % C]);
        reduce16(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(len: usize, seed: u32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(2_654_435_761).max(1);
        (0..len)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                s as f32 / u32::MAX as f32 - 0.5
            })
            .collect()
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn reduce16_puts_each_vectors_sum_in_its_lane() {
        use std::arch::x86_64::*;
        if !available() {
            eprintln!("skipped: no AVX-512 on this CPU");
            return;
        }
        let data: Vec<[f32; 16]> = (0..16)
            .map(|i| std::array::from_fn(|l| (i * 100 + l) as f32))
            .collect();
        // SAFETY: AVX-512F is available (checked above); each array holds 16 floats.
        let got: [f32; 16] = unsafe {
            let v = std::array::from_fn(|i| _mm512_loadu_ps(data[i].as_ptr()));
            let mut out = [0.0f32; 16];
            _mm512_storeu_ps(out.as_mut_ptr(), crate::kernels::simd::avx512::reduce16(v));
            out
        };
        for (i, (g, d)) in got.iter().zip(&data).enumerate() {
            assert_eq!(*g, d.iter().sum::<f32>(), "lane {i}");
        }
    }

    /// Against an f64 reference on ragged shapes (rows, outputs and K not multiples of the blocks),
    /// with and without bias, on one thread and a pool of two.
    #[test]
    fn matches_a_reference_on_ragged_shapes() {
        if !available() {
            eprintln!("skipped: no AVX-512 on this CPU");
            return;
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        for (rows, n, k) in [
            (1, 1, 1),
            (1, 40, 33),
            (2, 19, 48),
            (3, 5, 17),
            (4, 4, 16),
            (7, 37, 100),
            (6, 33, 64),
            (32, 300, 256),
            (5, 2000, 513),
        ] {
            let x = values(rows * k, 1 + k as u32);
            let w = values(n * k, 2 + n as u32);
            let bias = values(n, 3);
            for with_bias in [false, true] {
                let b = with_bias.then_some(&bias[..]);
                let mut want = vec![0.0f64; rows * n];
                for r in 0..rows {
                    for c in 0..n {
                        want[r * n + c] = (0..k)
                            .map(|i| f64::from(x[r * k + i]) * f64::from(w[c * k + i]))
                            .sum::<f64>()
                            + b.map_or(0.0, |b| f64::from(b[c]));
                    }
                }
                for threads in [1, 2] {
                    let mut got = vec![f32::NAN; rows * n];
                    let mut run = || matmul_rows(&x, rows, &w, b, n, k, &mut got);
                    if threads == 1 {
                        run()
                    } else {
                        pool.install(run)
                    }
                    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                        // |Σ| ≤ k/4 here; a few ulps of the magnitude of the terms' sum.
                        let tol = 1e-6 * (k as f64).max(1.0);
                        assert!(
                            (f64::from(*g) - w).abs() <= tol,
                            "{rows}×{n}×{k} bias {with_bias} [{i}]: {g} vs {w}"
                        );
                    }
                }
            }
        }
    }
}
