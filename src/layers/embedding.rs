//! Token embedding tables in any stored form: fp32, int8 with one scale per row (per token),
//! bit-packed sub-8-bit rows, or frequency tiers of those.

use super::lowbit_matrix::PackedRows;
use super::weight::Weight;

#[derive(Clone, Debug)]
pub enum Embedding {
    F32 {
        data: Vec<f32>,
        dim: usize,
    },
    /// `row[i] ≈ codes[i] · scales[id]`.
    Int8 {
        codes: Vec<i8>,
        scales: Vec<f32>,
        dim: usize,
    },
    /// Sub-8-bit rows (int4/int6, ternary, binary-coded), decoded one row per lookup.
    LowBit(PackedRows),
    /// Rows in frequency tiers, each tier a table of its own: row `id` is row `index[id]` of
    /// `tiers[tier[id]]`.
    Tiered {
        tiers: Vec<Embedding>,
        tier: Vec<u8>,
        index: Vec<u32>,
    },
}

impl Embedding {
    pub fn f32(data: Vec<f32>, dim: usize) -> Self {
        assert!(dim > 0 && data.len().is_multiple_of(dim));
        Self::F32 { data, dim }
    }

    pub fn from_weight(w: Weight, dim: usize) -> Self {
        match w {
            Weight::F32(data) => Self::f32(data, dim),
            Weight::Int8(m) => Self::Int8 {
                codes: m.codes,
                scales: m.scales,
                dim,
            },
            Weight::LowBit(m) => Self::LowBit(PackedRows::new(&m)),
            Weight::Tiered(t) => {
                let (mut tier, mut index) = (vec![0u8; t.rows], vec![0u32; t.rows]);
                let mut tiers = Vec::with_capacity(t.tiers.len());
                for (ti, (ids, w)) in t.tiers.into_iter().enumerate() {
                    for (i, &id) in ids.iter().enumerate() {
                        tier[id as usize] = ti as u8;
                        index[id as usize] = i as u32;
                    }
                    tiers.push(Self::from_weight(w, dim));
                }
                Self::Tiered { tiers, tier, index }
            }
        }
    }

    /// Writes `scale · row(id)` into `out` (length `dim`). `id` must be `< rows()`.
    pub fn lookup(&self, id: usize, scale: f32, out: &mut [f32]) {
        match self {
            Self::F32 { data, dim } => {
                for (o, e) in out.iter_mut().zip(&data[id * dim..(id + 1) * dim]) {
                    *o = e * scale;
                }
            }
            Self::Int8 { codes, scales, dim } => {
                let s = scales[id] * scale;
                for (o, &q) in out.iter_mut().zip(&codes[id * dim..(id + 1) * dim]) {
                    *o = q as f32 * s;
                }
            }
            Self::LowBit(rows) => rows.dequantize_row(id, scale, out),
            Self::Tiered { tiers, tier, index } => {
                tiers[tier[id] as usize].lookup(index[id] as usize, scale, out)
            }
        }
    }

    pub fn bytes(&self) -> usize {
        match self {
            Self::F32 { data, .. } => data.len() * 4,
            Self::Int8 { codes, scales, .. } => codes.len() + scales.len() * 4,
            Self::LowBit(rows) => rows.bytes(),
            Self::Tiered { tiers, tier, index } => {
                tiers.iter().map(Self::bytes).sum::<usize>() + tier.len() + index.len() * 4
            }
        }
    }
}
