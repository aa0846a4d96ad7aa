//! Ternary weights with TWN thresholds (TernaryBERT): `Δ = 0.7 · mean|w|`,
//! `α = mean(|w| : |w| > Δ)`, `ŵ = α · sign(w)` where `|w| > Δ`, else 0. One α per matrix or per
//! row (TernaryBERT quantizes word embeddings per row).

use anyhow::Result;

use super::{Role, Scheme, SchemeRef};
use crate::layers::{LowBitFormat, LowBitMatrix, Weight};

/// `ternary` (one α per matrix) or `ternary-row` (one α per row).
#[derive(Debug)]
pub struct Ternary {
    pub per_row: bool,
}

pub(super) fn parse(name: &str) -> Option<Result<SchemeRef>> {
    let per_row = match name {
        "ternary" => false,
        "ternary-row" => true,
        _ => return None,
    };
    Some(Ok(SchemeRef::new(Ternary { per_row })))
}

impl Scheme for Ternary {
    fn name(&self) -> String {
        if self.per_row {
            "ternary-row"
        } else {
            "ternary"
        }
        .into()
    }

    fn bits(&self) -> u32 {
        2
    }

    fn granularity(&self) -> String {
        if self.per_row {
            "per_row"
        } else {
            "per_matrix"
        }
        .into()
    }

    /// Embedding tables always get one α per row, as TernaryBERT's word embeddings.
    fn quantize(&self, w: &[f32], rows: usize, cols: usize, role: Role) -> Weight {
        let per_row = self.per_row || role == Role::Embedding;
        Weight::LowBit(quantize(w, rows, cols, per_row))
    }
}

/// TWN threshold and scale of a set of weights: `(Δ, α)`.
pub fn twn(w: &[f32]) -> (f32, f32) {
    if w.is_empty() {
        return (0.0, 0.0);
    }
    let mean_abs = w.iter().map(|v| f64::from(v.abs())).sum::<f64>() / w.len() as f64;
    let delta = (0.7 * mean_abs) as f32;
    let (sum, n) = w
        .iter()
        .filter(|v| v.abs() > delta)
        .fold((0.0f64, 0usize), |(s, n), v| {
            (s + f64::from(v.abs()), n + 1)
        });
    let alpha = if n == 0 { 0.0 } else { (sum / n as f64) as f32 };
    (delta, alpha)
}

/// Ternary codes of the row-major `w` (`rows × cols`), α per row when `per_row`, else one α for
/// the whole matrix (stored on every row).
pub fn quantize(w: &[f32], rows: usize, cols: usize, per_row: bool) -> LowBitMatrix {
    assert_eq!(w.len(), rows * cols, "weights must be {rows}×{cols}");
    let whole = (!per_row).then(|| twn(w));
    let mut codes = vec![0i8; rows * cols];
    let mut params = Vec::with_capacity(rows);
    for (row, q_row) in w
        .chunks_exact(cols.max(1))
        .zip(codes.chunks_exact_mut(cols.max(1)))
    {
        let (delta, alpha) = whole.unwrap_or_else(|| twn(row));
        params.push(alpha);
        for (q, &v) in q_row.iter_mut().zip(row) {
            if v.abs() > delta {
                *q = if v > 0.0 { 1 } else { -1 };
            }
        }
    }
    LowBitMatrix {
        format: LowBitFormat::Ternary,
        rows,
        cols,
        codes,
        params,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twn_matches_a_hand_computed_case() {
        // mean|w| = (0.1+0.2+0.3+0.4+1.0+0.0)/6 = 2.0/6 = 0.3333; Δ = 0.2333;
        // above Δ: 0.3, 0.4, 1.0 → α = 1.7/3 = 0.5667.
        let w = [0.1, -0.2, 0.3, -0.4, 1.0, 0.0];
        let (delta, alpha) = twn(&w);
        assert!((delta - 0.7 * 2.0 / 6.0).abs() < 1e-6, "{delta}");
        assert!((alpha - 1.7 / 3.0).abs() < 1e-6, "{alpha}");
        let m = quantize(&w, 1, 6, false);
        assert_eq!(m.codes, [0, 0, 1, -1, 1, 0]);
        assert_eq!(m.params, [alpha]);
        let back = m.dequantize();
        assert_eq!(back, [0.0, 0.0, alpha, -alpha, alpha, 0.0]);
    }

    #[test]
    fn per_matrix_shares_alpha_and_per_row_fits_better() {
        let w = [0.1, -0.2, 0.3, 2.0, -4.0, 6.0];
        let m = quantize(&w, 2, 3, false);
        assert_eq!(m.params[0], m.params[1]);
        let r = quantize(&w, 2, 3, true);
        assert_ne!(r.params[0], r.params[1]);
        let e = |m: &LowBitMatrix| crate::layers::lowbit_matrix::squared_error(&w, m);
        assert!(e(&r) < e(&m));
    }

    #[test]
    fn zero_matrix_stays_zero() {
        let m = quantize(&[0.0; 4], 2, 2, true);
        assert_eq!(m.params, [0.0, 0.0]);
        assert!(m.dequantize().iter().all(|&v| v == 0.0));
    }
}
