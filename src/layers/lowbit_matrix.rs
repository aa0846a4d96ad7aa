//! The common form of every sub-8-bit scheme: signed integer codes plus per-row parameters, and
//! the bit-packed rows they are stored as (on disk and in embedding tables). `layers::lowbit`
//! packs them for the kernels.
//!
//! * uniform (`int4`, `int6`, group-wise): `w[r][c] ≈ code · scale[r][c / group]`
//! * ternary: `w[r][c] ≈ code · α[r]`, code ∈ {−1, 0, 1}
//! * binary-coding (`bcq<q>`): `w[r][c] ≈ Σ_p α[r][p] · code_p[r][c]`, code ∈ {−1, +1}
//!
//! Codes are kept row-major as `[rows][planes][cols]` (planes = 1 except for bcq) and parameters
//! as `[rows][params_per_row]`, so stacking matrices (fused Q, K, V) is concatenation.

use anyhow::{Context, Result, bail, ensure};

/// How a matrix's codes are to be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LowBitFormat {
    /// Symmetric uniform codes in `±(2^(bits−1) − 1)`; `group` columns share a scale
    /// (`None`: the whole row, i.e. per output channel).
    Uniform { bits: u32, group: Option<usize> },
    /// Codes in {−1, 0, 1}, one α per row (a per-matrix α is repeated on every row).
    Ternary,
    /// `planes` sign planes, one α per plane per row.
    Bcq { planes: usize },
}

impl LowBitFormat {
    /// Bits of one stored code.
    pub fn code_bits(self) -> u32 {
        match self {
            Self::Uniform { bits, .. } => bits,
            Self::Ternary => 2,
            Self::Bcq { .. } => 1,
        }
    }

    pub fn planes(self) -> usize {
        match self {
            Self::Bcq { planes } => planes,
            _ => 1,
        }
    }

    /// Added to a signed code to store it unsigned (`u = code + offset`); bcq stores `(s+1)/2`.
    pub fn offset(self) -> i32 {
        match self {
            Self::Uniform { bits, .. } => 1 << (bits - 1),
            Self::Ternary | Self::Bcq { .. } => 1,
        }
    }

    /// Scales/α per row for a matrix with `cols` columns.
    pub fn params_per_row(self, cols: usize) -> usize {
        match self {
            Self::Uniform { group: Some(g), .. } => cols.div_ceil(g),
            Self::Uniform { group: None, .. } | Self::Ternary => 1,
            Self::Bcq { planes } => planes,
        }
    }

    /// Bits of weight storage per weight, parameters (f32) included.
    pub fn bits_per_weight(self, cols: usize) -> f64 {
        let codes = f64::from(self.code_bits()) * self.planes() as f64;
        codes + 32.0 * self.params_per_row(cols) as f64 / cols.max(1) as f64
    }

    /// The per-tensor descriptor written into the variant metadata, e.g. `uniform:4:64`.
    pub fn descriptor(self) -> String {
        match self {
            Self::Uniform { bits, group } => {
                format!("uniform:{bits}:{}", group.map_or(0, |g| g))
            }
            Self::Ternary => "ternary".into(),
            Self::Bcq { planes } => format!("bcq:{planes}"),
        }
    }

    pub fn from_descriptor(s: &str) -> Result<Self> {
        let parts: Vec<&str> = s.split(':').collect();
        let format = match parts.as_slice() {
            ["uniform", bits, group] => {
                let bits: u32 = bits.parse()?;
                let group: usize = group.parse()?;
                Self::Uniform {
                    bits,
                    group: (group > 0).then_some(group),
                }
            }
            ["ternary"] => Self::Ternary,
            ["bcq", planes] => Self::Bcq {
                planes: planes.parse()?,
            },
            _ => bail!("unknown low-bit tensor format `{s}`"),
        };
        format.validate()?;
        Ok(format)
    }

    /// The same format for a matrix of `cols` columns: a group at least as wide as the row is
    /// one scale per row, and is stored as such (so a file and load-time derivation agree, and
    /// a crafted huge group cannot make the kernels pad every row to its width).
    pub fn for_cols(self, cols: usize) -> Self {
        match self {
            Self::Uniform {
                bits,
                group: Some(g),
            } if g >= cols => Self::Uniform { bits, group: None },
            f => f,
        }
    }

    pub fn validate(self) -> Result<()> {
        match self {
            Self::Uniform { bits, group } => {
                ensure!((2..=8).contains(&bits), "uniform bits must be 2..=8");
                ensure!(
                    group.is_none_or(|g| g > 0 && g % 64 == 0),
                    "group size must be a positive multiple of 64"
                );
            }
            Self::Ternary => {}
            Self::Bcq { planes } => ensure!((1..=4).contains(&planes), "bcq needs 1..=4 planes"),
        }
        Ok(())
    }
}

/// A quantized matrix: signed codes `[rows][planes][cols]` and parameters `[rows][params]`.
#[derive(Clone, Debug, PartialEq)]
pub struct LowBitMatrix {
    pub format: LowBitFormat,
    pub rows: usize,
    pub cols: usize,
    pub codes: Vec<i8>,
    pub params: Vec<f32>,
}

impl LowBitMatrix {
    pub fn params_per_row(&self) -> usize {
        self.format.params_per_row(self.cols)
    }

    /// Row `r` reconstructed into `out` (length `cols`), each value times `scale`.
    pub fn dequantize_row(&self, r: usize, scale: f32, out: &mut [f32]) {
        let (per_row, pp) = (self.planes_cols(), self.params_per_row());
        dequantize_codes(
            self.format,
            &self.codes[r * per_row..(r + 1) * per_row],
            &self.params[r * pp..(r + 1) * pp],
            scale,
            out,
        );
    }

    /// The whole matrix in f32.
    pub fn dequantize(&self) -> Vec<f32> {
        let mut out = vec![0.0; self.rows * self.cols];
        for (r, row) in out.chunks_exact_mut(self.cols.max(1)).enumerate() {
            self.dequantize_row(r, 1.0, row);
        }
        out
    }

    /// Stacks matrices of the same format and width (fused layers).
    pub fn concat_rows(parts: Vec<LowBitMatrix>) -> Result<Self> {
        let first = parts.first().expect("at least one part");
        let (format, cols) = (first.format, first.cols);
        ensure!(
            parts.iter().all(|p| p.format == format && p.cols == cols),
            "fused low-bit layers differ in format or width"
        );
        let mut out = LowBitMatrix {
            format,
            rows: 0,
            cols,
            codes: Vec::new(),
            params: Vec::new(),
        };
        for p in parts {
            out.rows += p.rows;
            out.codes.extend(p.codes);
            out.params.extend(p.params);
        }
        Ok(out)
    }

    /// Bytes per stored row: `planes · cols` codes of `code_bits` each, padded to a byte.
    pub fn packed_row_bytes(format: LowBitFormat, cols: usize) -> usize {
        (format.planes() * cols * format.code_bits() as usize).div_ceil(8)
    }

    /// Codes as unsigned values packed LSB-first, each row starting on a byte.
    pub fn pack_rows(&self) -> Vec<u8> {
        let bits = self.format.code_bits() as usize;
        let per_row = self.planes_cols();
        let row_bytes = Self::packed_row_bytes(self.format, self.cols);
        let mut out = vec![0u8; self.rows * row_bytes];
        for (codes, bytes) in self
            .codes
            .chunks_exact(per_row.max(1))
            .zip(out.chunks_exact_mut(row_bytes.max(1)))
        {
            for (i, &q) in codes.iter().enumerate() {
                let u = self.unsigned_code(q) as u32;
                let bit = i * bits;
                // A code may straddle two bytes (6-bit codes).
                let word = u << (bit % 8);
                bytes[bit / 8] |= word as u8;
                if bit % 8 + bits > 8 {
                    bytes[bit / 8 + 1] |= (word >> 8) as u8;
                }
            }
        }
        out
    }

    /// Bytes of `rows` packed rows of `cols` columns, `None` when a size overflows (a crafted
    /// descriptor must be refused, not wrapped into a small number that passes a length check).
    pub fn checked_packed_bytes(format: LowBitFormat, rows: usize, cols: usize) -> Option<usize> {
        let bits = format
            .planes()
            .checked_mul(cols)?
            .checked_mul(format.code_bits() as usize)?;
        rows.checked_mul(bits.div_ceil(8))
    }

    /// The inverse of [`pack_rows`](Self::pack_rows). Every size is checked against the real
    /// length of `bytes` and `params` before anything is allocated.
    pub fn unpack_rows(
        format: LowBitFormat,
        rows: usize,
        cols: usize,
        bytes: &[u8],
        params: Vec<f32>,
    ) -> Result<Self> {
        format.validate()?;
        let format = format.for_cols(cols);
        let needed = Self::checked_packed_bytes(format, rows, cols)
            .with_context(|| format!("{rows}×{cols} in {} overflows", format.descriptor()))?;
        ensure!(
            bytes.len() == needed,
            "packed codes hold {} bytes, {rows}×{cols} in {} needs {needed}",
            bytes.len(),
            format.descriptor(),
        );
        // Codes take one byte each in memory: bounded by 8 × the packed bytes read from the file.
        let n_codes = rows
            .checked_mul(format.planes())
            .and_then(|n| n.checked_mul(cols))
            .context("code count overflows")?;
        ensure!(
            rows.checked_mul(format.params_per_row(cols)) == Some(params.len()),
            "wrong number of scales for {}",
            format.descriptor()
        );
        ensure!(
            params.iter().all(|p| p.is_finite()),
            "a scale is NaN or infinite"
        );
        let row_bytes = needed.checked_div(rows).unwrap_or(0);
        let mut m = LowBitMatrix {
            format,
            rows,
            cols,
            codes: vec![0; n_codes],
            params,
        };
        let per_row = m.planes_cols();
        for r in 0..rows {
            let row = &bytes[r * row_bytes..(r + 1) * row_bytes];
            for i in 0..per_row {
                let u = read_code(row, i, format.code_bits());
                m.codes[r * per_row + i] = m.signed_code(u);
            }
        }
        Ok(m)
    }

    fn planes_cols(&self) -> usize {
        self.format.planes() * self.cols
    }

    pub fn unsigned_code(&self, q: i8) -> u8 {
        match self.format {
            LowBitFormat::Bcq { .. } => u8::from(q > 0),
            f => (i32::from(q) + f.offset()) as u8,
        }
    }

    fn signed_code(&self, u: u8) -> i8 {
        match self.format {
            LowBitFormat::Bcq { .. } => {
                if u != 0 {
                    1
                } else {
                    -1
                }
            }
            f => (i32::from(u) - f.offset()) as i8,
        }
    }
}

/// One row from its signed codes (`[planes][cols]`) and parameters, times `scale`.
fn dequantize_codes(
    format: LowBitFormat,
    codes: &[i8],
    params: &[f32],
    scale: f32,
    out: &mut [f32],
) {
    let cols = out.len();
    match format {
        LowBitFormat::Uniform { group, .. } => {
            let g = group.unwrap_or(cols.max(1));
            for (c, (o, &q)) in out.iter_mut().zip(codes).enumerate() {
                *o = f32::from(q) * params[c / g] * scale;
            }
        }
        LowBitFormat::Ternary => {
            for (o, &q) in out.iter_mut().zip(codes) {
                *o = f32::from(q) * params[0] * scale;
            }
        }
        LowBitFormat::Bcq { planes } => {
            for (c, o) in out.iter_mut().enumerate() {
                let v: f32 = (0..planes)
                    .map(|p| f32::from(codes[p * cols + c]) * params[p])
                    .sum();
                *o = v * scale;
            }
        }
    }
}

/// A table kept as bit-packed rows (token embeddings): each lookup decodes one row.
#[derive(Clone, Debug)]
pub struct PackedRows {
    pub format: LowBitFormat,
    pub rows: usize,
    pub cols: usize,
    bytes: Vec<u8>,
    params: Vec<f32>,
}

impl PackedRows {
    pub fn new(m: &LowBitMatrix) -> Self {
        Self {
            format: m.format,
            rows: m.rows,
            cols: m.cols,
            bytes: m.pack_rows(),
            params: m.params.clone(),
        }
    }

    /// Row `r` reconstructed into `out` (length `cols`), each value times `scale`.
    pub fn dequantize_row(&self, r: usize, scale: f32, out: &mut [f32]) {
        let row_bytes = LowBitMatrix::packed_row_bytes(self.format, self.cols);
        let row = &self.bytes[r * row_bytes..(r + 1) * row_bytes];
        let (bits, offset) = (self.format.code_bits(), self.format.offset());
        let bcq = matches!(self.format, LowBitFormat::Bcq { .. });
        let codes: Vec<i8> = (0..self.format.planes() * self.cols)
            .map(|i| {
                let u = i32::from(read_code(row, i, bits));
                if bcq {
                    (2 * u - 1) as i8
                } else {
                    (u - offset) as i8
                }
            })
            .collect();
        let pp = self.format.params_per_row(self.cols);
        dequantize_codes(
            self.format,
            &codes,
            &self.params[r * pp..(r + 1) * pp],
            scale,
            out,
        );
    }

    pub fn bytes(&self) -> usize {
        self.bytes.len() + self.params.len() * 4
    }
}

/// Code `i` of a row packed LSB-first with `bits` bits per code.
pub fn read_code(row: &[u8], i: usize, bits: u32) -> u8 {
    let bit = i * bits as usize;
    let mut word = u32::from(row[bit / 8]);
    if bit % 8 + bits as usize > 8 {
        word |= u32::from(row[bit / 8 + 1]) << 8;
    }
    ((word >> (bit % 8)) & ((1 << bits) - 1)) as u8
}

/// Squared reconstruction error `Σ (w − ŵ)²` of a quantized matrix against its source.
pub fn squared_error(w: &[f32], m: &LowBitMatrix) -> f64 {
    w.iter()
        .zip(m.dequantize())
        .map(|(&a, b)| f64::from(a - b).powi(2))
        .sum()
}

/// Deterministic pseudo-random weights, roughly bell-shaped (sum of three uniforms), for tests.
#[cfg(test)]
pub(crate) fn test_weights(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    let mut next = move || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    };
    (0..n).map(|_| (next() + next() + next()) * 0.1).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packing_round_trips_every_format() {
        let formats = [
            LowBitFormat::Uniform {
                bits: 4,
                group: None,
            },
            LowBitFormat::Uniform {
                bits: 6,
                group: Some(64),
            },
            LowBitFormat::Ternary,
            LowBitFormat::Bcq { planes: 3 },
        ];
        for format in formats {
            let (rows, cols) = (3, 70);
            let planes = format.planes();
            let qmax = match format {
                LowBitFormat::Uniform { bits, .. } => (1 << (bits - 1)) - 1,
                _ => 1,
            };
            let codes: Vec<i8> = (0..rows * planes * cols)
                .map(|i| {
                    let v = (i as i32 * 7919 % (2 * qmax + 1)) - qmax;
                    if matches!(format, LowBitFormat::Bcq { .. }) && v == 0 {
                        1
                    } else {
                        v as i8
                    }
                })
                .collect();
            let params = vec![0.5; rows * format.params_per_row(cols)];
            let m = LowBitMatrix {
                format,
                rows,
                cols,
                codes,
                params: params.clone(),
            };
            let packed = m.pack_rows();
            let back = LowBitMatrix::unpack_rows(format, rows, cols, &packed, params).unwrap();
            assert_eq!(back, m, "{}", format.descriptor());
            assert_eq!(
                LowBitFormat::from_descriptor(&format.descriptor()).unwrap(),
                format
            );
        }
    }
}
