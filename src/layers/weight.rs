//! The stored forms of a weight matrix: what a scheme's quantizer produces, what the variant file
//! reads and writes (`format`), and what layers and embedding tables are built from.

use anyhow::{Context, Result, bail, ensure};

pub use super::lowbit_matrix::{LowBitFormat, LowBitMatrix};

/// int8 codes with one scale per row: `w[r][c] ≈ codes[r][c] · scales[r]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Int8Matrix {
    pub codes: Vec<i8>,
    pub scales: Vec<f32>,
}

/// A weight matrix `[rows][cols]` in one of its stored forms.
#[derive(Clone, Debug, PartialEq)]
pub enum Weight {
    F32(Vec<f32>),
    Int8(Int8Matrix),
    /// Sub-8-bit codes (int4/int6, ternary, binary-coding planes) with their scales.
    LowBit(LowBitMatrix),
    /// Rows split into tiers (embeddings by token frequency), each tier in its own form.
    Tiered(TieredWeight),
}

/// At most this many tiers (a tier index is stored in a byte).
pub const MAX_TIERS: usize = 255;

/// A matrix whose rows are stored in several parts: `tiers[t] = (row ids, their rows)`. Every
/// row of the matrix is in exactly one tier.
#[derive(Clone, Debug, PartialEq)]
pub struct TieredWeight {
    pub rows: usize,
    pub cols: usize,
    pub tiers: Vec<(Vec<u32>, Weight)>,
}

impl TieredWeight {
    /// Checks that the tiers' ids cover `0..rows` exactly once.
    pub fn new(rows: usize, cols: usize, tiers: Vec<(Vec<u32>, Weight)>) -> Result<Self> {
        ensure!(tiers.len() <= MAX_TIERS, "more than {MAX_TIERS} tiers");
        // `rows` may come from a file: it must equal the row ids really given before it sizes
        // anything.
        let given: usize = tiers.iter().map(|(ids, _)| ids.len()).sum();
        ensure!(
            given == rows,
            "the tiers hold {given} rows, the matrix has {rows}"
        );
        ensure!(
            tiers.iter().all(|(_, w)| !matches!(w, Weight::Tiered(_))),
            "a tier cannot itself be tiered"
        );
        let mut seen = vec![false; rows];
        for (ids, w) in &tiers {
            ensure!(
                w.has_shape(ids.len(), cols),
                "a tier's rows do not match its ids"
            );
            for &id in ids {
                let slot = seen
                    .get_mut(id as usize)
                    .with_context(|| format!("tier row {id} is outside the {rows} rows"))?;
                ensure!(!*slot, "row {id} is in two tiers");
                *slot = true;
            }
        }
        ensure!(
            seen.iter().all(|&s| s),
            "the tiers do not cover every row of the matrix"
        );
        Ok(Self { rows, cols, tiers })
    }
}

impl Weight {
    /// Whether the stored matrix is `rows × cols`.
    pub fn has_shape(&self, rows: usize, cols: usize) -> bool {
        match self {
            Self::F32(w) => rows.checked_mul(cols) == Some(w.len()),
            Self::Int8(m) => {
                rows.checked_mul(cols) == Some(m.codes.len()) && m.scales.len() == rows
            }
            Self::LowBit(m) => m.rows == rows && m.cols == cols,
            Self::Tiered(t) => t.rows == rows && t.cols == cols,
        }
    }

    /// Whether this is a quantized form (not plain fp32).
    pub fn is_quantized(&self) -> bool {
        !matches!(self, Self::F32(_))
    }

    /// (bits of codes and scales, number of weights).
    pub fn bits_and_weights(&self) -> (f64, usize) {
        match self {
            Self::F32(w) => (32.0 * w.len() as f64, w.len()),
            Self::Int8(m) => (
                (m.codes.len() * 8 + m.scales.len() * 32) as f64,
                m.codes.len(),
            ),
            Self::LowBit(m) => {
                let n = m.rows * m.cols;
                (m.format.bits_per_weight(m.cols) * n as f64, n)
            }
            // The row ids (32 bits each) are part of the cost.
            Self::Tiered(t) => t.tiers.iter().fold((0.0, 0), |(b, n), (ids, m)| {
                let (mb, mn) = m.bits_and_weights();
                (b + mb + 32.0 * ids.len() as f64, n + mn)
            }),
        }
    }

    /// Stacks matrices with the same column count on top of each other (e.g. Q, K and V).
    pub fn concat_rows(parts: Vec<Weight>) -> Result<Weight> {
        if parts.iter().all(|p| matches!(p, Weight::F32(_))) {
            return Ok(Weight::F32(
                parts
                    .into_iter()
                    .flat_map(|p| match p {
                        Weight::F32(v) => v,
                        _ => unreachable!(),
                    })
                    .collect(),
            ));
        }
        if parts.iter().all(|p| matches!(p, Weight::LowBit(_))) {
            let parts = parts
                .into_iter()
                .map(|p| match p {
                    Weight::LowBit(m) => m,
                    _ => unreachable!(),
                })
                .collect();
            return Ok(Weight::LowBit(LowBitMatrix::concat_rows(parts)?));
        }
        let (mut codes, mut scales) = (Vec::new(), Vec::new());
        for p in parts {
            match p {
                Weight::Int8(m) => {
                    codes.extend(m.codes);
                    scales.extend(m.scales);
                }
                _ => bail!("cannot fuse matrices stored in different schemes"),
            }
        }
        Ok(Weight::Int8(Int8Matrix { codes, scales }))
    }
}
