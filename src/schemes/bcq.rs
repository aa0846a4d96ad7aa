//! Binary-coding quantization (Samsung, BiQGEMM): each row `w ≈ Σ_{p<q} α_p · b_p`,
//! `b_p ∈ {−1, +1}^n`. Greedy initialisation (`b = sign(r)`, `α = mean|r|` on the running
//! residual `r`), then alternating refinement: least-squares α for fixed codes, then for fixed α
//! the best code of every weight (all `2^q` sign patterns tried). Each half-step is optimal for
//! what it changes, so the error never increases.

use rayon::prelude::*;

use anyhow::Result;

use super::{Role, Scheme, SchemeRef, invalid};
use crate::layers::{LowBitFormat, LowBitMatrix, Weight};

/// `bcq<planes>`: binary coding with `planes` sign planes.
#[derive(Debug)]
pub struct Bcq {
    pub planes: usize,
}

pub(super) fn parse(name: &str) -> Option<Result<SchemeRef>> {
    let planes: usize = name.strip_prefix("bcq")?.parse().unwrap_or(0);
    if (LowBitFormat::Bcq { planes }).validate().is_err() {
        return Some(Err(invalid(name)));
    }
    Some(Ok(SchemeRef::new(Bcq { planes })))
}

impl Scheme for Bcq {
    fn name(&self) -> String {
        format!("bcq{}", self.planes)
    }

    fn bits(&self) -> u32 {
        self.planes as u32
    }

    fn granularity(&self) -> String {
        "per_row_per_plane".into()
    }

    fn quantize(&self, w: &[f32], rows: usize, cols: usize, _role: Role) -> Weight {
        Weight::LowBit(quantize(w, rows, cols, self.planes, ALS_ROUNDS))
    }
}

/// Alternating refinement rounds (the error is usually flat after a handful).
pub const ALS_ROUNDS: usize = 8;

/// Quantizes the row-major `w` (`rows × cols`) into `planes` binary planes per row, refining
/// each row with `rounds` alternating least-squares rounds.
pub fn quantize(w: &[f32], rows: usize, cols: usize, planes: usize, rounds: usize) -> LowBitMatrix {
    assert_eq!(w.len(), rows * cols, "weights must be {rows}×{cols}");
    assert!((1..=4).contains(&planes), "bcq needs 1..=4 planes");
    let mut codes = vec![0i8; rows * planes * cols];
    let mut params = vec![0.0f32; rows * planes];
    if cols > 0 {
        // Rows are independent; large tables (embeddings) take seconds on one core.
        codes
            .par_chunks_exact_mut(planes * cols)
            .zip(params.par_chunks_exact_mut(planes))
            .zip(w.par_chunks_exact(cols))
            .for_each(|((b, a), row)| {
                greedy(row, b, a);
                for _ in 0..rounds {
                    refine_alpha(row, b, a);
                    refine_codes(row, b, a);
                }
            });
    }
    LowBitMatrix {
        format: LowBitFormat::Bcq { planes },
        rows,
        cols,
        codes,
        params,
    }
}

/// Greedy: each plane codes the sign of what the previous planes left.
pub fn greedy(w: &[f32], codes: &mut [i8], alpha: &mut [f32]) {
    let n = w.len();
    let mut residual: Vec<f32> = w.to_vec();
    for (p, a) in alpha.iter_mut().enumerate() {
        let b = &mut codes[p * n..(p + 1) * n];
        *a = (residual.iter().map(|v| f64::from(v.abs())).sum::<f64>() / n.max(1) as f64) as f32;
        for (bi, r) in b.iter_mut().zip(residual.iter_mut()) {
            *bi = if *r >= 0.0 { 1 } else { -1 };
            *r -= *a * f32::from(*bi);
        }
    }
}

/// Least-squares α for fixed codes: solves `(BᵀB) α = Bᵀw` (q ≤ 4, in f64). Keeps the old α if
/// the system is singular (two identical or opposite planes), which cannot increase the error.
// Index loops read best for the tiny q×q system.
#[allow(clippy::needless_range_loop)]
pub fn refine_alpha(w: &[f32], codes: &[i8], alpha: &mut [f32]) {
    let (q, n) = (alpha.len(), w.len());
    let plane = |p: usize| &codes[p * n..(p + 1) * n];
    let mut m = [[0.0f64; 5]; 4];
    for i in 0..q {
        for j in i..q {
            // ±1 products summed exactly in integers (vectorizes).
            let dot: i32 = plane(i)
                .iter()
                .zip(plane(j))
                .map(|(&a, &b)| i32::from(a) * i32::from(b))
                .sum();
            m[i][j] = f64::from(dot);
            m[j][i] = f64::from(dot);
        }
        m[i][q] = plane(i)
            .iter()
            .zip(w)
            .map(|(&b, &v)| f64::from(b) * f64::from(v))
            .sum();
    }
    if let Some(x) = solve(&mut m, q) {
        for (a, v) in alpha.iter_mut().zip(x) {
            *a = v as f32;
        }
    }
}

/// For fixed α, the best sign pattern of every weight: the nearest of the `2^q` pattern values,
/// found by binary search over them sorted.
pub fn refine_codes(w: &[f32], codes: &mut [i8], alpha: &[f32]) {
    let (q, n) = (alpha.len(), w.len());
    let mut patterns: Vec<(f32, usize)> = (0..1usize << q)
        .map(|bits| {
            let v = (0..q)
                .map(|p| {
                    if bits >> p & 1 == 1 {
                        alpha[p]
                    } else {
                        -alpha[p]
                    }
                })
                .sum();
            (v, bits)
        })
        .collect();
    patterns.sort_by(|a, b| a.0.total_cmp(&b.0));
    for (i, &v) in w.iter().enumerate() {
        let hi = patterns
            .partition_point(|p| p.0 < v)
            .min(patterns.len() - 1);
        let lo = hi.saturating_sub(1);
        let best = if (v - patterns[lo].0).abs() <= (v - patterns[hi].0).abs() {
            patterns[lo].1
        } else {
            patterns[hi].1
        };
        for p in 0..q {
            codes[p * n + i] = if best >> p & 1 == 1 { 1 } else { -1 };
        }
    }
}

/// `Σ (w − Σ_p α_p b_p)²` of one row.
pub fn error(w: &[f32], codes: &[i8], alpha: &[f32]) -> f64 {
    let n = w.len();
    w.iter()
        .enumerate()
        .map(|(i, &v)| {
            let approx: f32 = alpha
                .iter()
                .enumerate()
                .map(|(p, &a)| a * f32::from(codes[p * n + i]))
                .sum();
            f64::from(v - approx).powi(2)
        })
        .sum()
}

/// Gaussian elimination with partial pivoting on the augmented `q × (q+1)` system.
#[allow(clippy::needless_range_loop)]
fn solve(m: &mut [[f64; 5]; 4], q: usize) -> Option<Vec<f64>> {
    for col in 0..q {
        let pivot = (col..q).max_by(|&a, &b| m[a][col].abs().total_cmp(&m[b][col].abs()))?;
        if m[pivot][col].abs() < 1e-9 {
            return None;
        }
        m.swap(col, pivot);
        for r in 0..q {
            if r != col {
                let f = m[r][col] / m[col][col];
                for c in col..=q {
                    m[r][c] -= f * m[col][c];
                }
            }
        }
    }
    Some((0..q).map(|i| m[i][q] / m[i][i]).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::layers::lowbit_matrix::test_weights as random;

    #[test]
    fn one_plane_greedy_is_sign_times_mean_abs() {
        let w = [0.5, -1.5, 1.0, -1.0];
        let m = quantize(&w, 1, 4, 1, 0);
        assert_eq!(m.codes, [1, -1, 1, -1]);
        assert_eq!(m.params, [1.0]);
    }

    #[test]
    fn error_decreases_with_planes() {
        let (rows, cols) = (8, 256);
        let w = random(rows * cols, 3);
        let errors: Vec<f64> = (1..=4)
            .map(|q| {
                crate::layers::lowbit_matrix::squared_error(
                    &w,
                    &quantize(&w, rows, cols, q, ALS_ROUNDS),
                )
            })
            .collect();
        for pair in errors.windows(2) {
            assert!(pair[1] < pair[0], "{errors:?}");
        }
    }

    #[test]
    fn alternating_refinement_never_increases_error() {
        let n = 300;
        for q in 1..=4 {
            let w = random(n, 10 + q as u64);
            let mut b = vec![0i8; q * n];
            let mut a = vec![0.0f32; q];
            greedy(&w, &mut b, &mut a);
            let mut last = error(&w, &b, &a);
            let greedy_error = last;
            for _ in 0..ALS_ROUNDS {
                refine_alpha(&w, &b, &mut a);
                let e = error(&w, &b, &a);
                assert!(e <= last * (1.0 + 1e-6), "α step: {e} > {last}");
                last = e;
                refine_codes(&w, &mut b, &a);
                let e = error(&w, &b, &a);
                assert!(e <= last * (1.0 + 1e-6), "code step: {e} > {last}");
                last = e;
            }
            if q > 1 {
                assert!(last < greedy_error, "refinement should help for q={q}");
            }
        }
    }
}
