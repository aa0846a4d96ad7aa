//! Uniform symmetric quantization below 8 bits (FullyQT): `q = clamp(round(w / s), ±qmax)`,
//! `qmax = 2^(bits−1) − 1`, `s = max|w| / qmax` per output channel or per group of columns.

use anyhow::Result;

use super::{Role, Scheme, SchemeRef, invalid};
use crate::layers::{LowBitFormat, LowBitMatrix, Weight};

/// `int<bits>` (per output channel) or `int<bits>-g<group>`.
#[derive(Debug)]
pub struct Uniform {
    pub bits: u32,
    pub group: Option<usize>,
}

/// `int4`, `int6`, `int4-g<G>`, `int6-g<G>` (G a multiple of 64); `int8` is its own scheme.
pub(super) fn parse(name: &str) -> Option<Result<SchemeRef>> {
    let rest = name.strip_prefix("int")?;
    let (bits, group) = match rest.split_once("-g") {
        Some((b, g)) => (b, Some(g.parse::<usize>().unwrap_or(0))),
        None => (rest, None),
    };
    let bits: u32 = bits.parse().unwrap_or(0);
    let format = LowBitFormat::Uniform { bits, group };
    if !(bits == 4 || bits == 6) || format.validate().is_err() {
        return Some(Err(invalid(name)));
    }
    Some(Ok(SchemeRef::new(Uniform { bits, group })))
}

impl Scheme for Uniform {
    fn name(&self) -> String {
        match self.group {
            None => format!("int{}", self.bits),
            Some(g) => format!("int{}-g{g}", self.bits),
        }
    }

    fn bits(&self) -> u32 {
        self.bits
    }

    fn granularity(&self) -> String {
        match self.group {
            None => "per_channel".into(),
            Some(g) => format!("group_{g}"),
        }
    }

    fn quantize(&self, w: &[f32], rows: usize, cols: usize, _role: Role) -> Weight {
        Weight::LowBit(quantize(w, rows, cols, self.bits, self.group))
    }
}

/// Quantizes the row-major `w` (`rows × cols`) with `bits` bits and one scale per `group`
/// columns of each row (`None`: per row).
pub fn quantize(
    w: &[f32],
    rows: usize,
    cols: usize,
    bits: u32,
    group: Option<usize>,
) -> LowBitMatrix {
    assert_eq!(w.len(), rows * cols, "weights must be {rows}×{cols}");
    assert!((2..=8).contains(&bits), "uniform bits must be 2..=8");
    let format = LowBitFormat::Uniform { bits, group }.for_cols(cols);
    let group = match format {
        LowBitFormat::Uniform { group, .. } => group,
        _ => unreachable!("a uniform format"),
    };
    let qmax = ((1i32 << (bits - 1)) - 1) as f32;
    let g = group.unwrap_or(cols.max(1));
    let mut codes = vec![0i8; rows * cols];
    let mut params = Vec::with_capacity(rows * format.params_per_row(cols));
    for (row, q_row) in w
        .chunks_exact(cols.max(1))
        .zip(codes.chunks_exact_mut(cols.max(1)))
    {
        for (chunk, q_chunk) in row.chunks(g).zip(q_row.chunks_mut(g)) {
            let amax = chunk.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            assert!(amax.is_finite(), "non-finite weight");
            let scale = amax / qmax;
            params.push(scale);
            if scale > 0.0 {
                for (q, &v) in q_chunk.iter_mut().zip(chunk) {
                    *q = (v / scale).round().clamp(-qmax, qmax) as i8;
                }
            }
        }
    }
    LowBitMatrix {
        format,
        rows,
        cols,
        codes,
        params,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::layers::lowbit_matrix::test_weights as random;

    #[test]
    fn error_is_at_most_half_a_step_per_element() {
        let (rows, cols) = (7, 200);
        let w = random(rows * cols, 1);
        for bits in [4, 6] {
            for group in [None, Some(64), Some(128)] {
                let m = quantize(&w, rows, cols, bits, group);
                let g = group.unwrap_or(cols);
                let pp = m.params_per_row();
                assert_eq!(m.params.len(), rows * pp);
                let back = m.dequantize();
                for r in 0..rows {
                    for c in 0..cols {
                        let s = m.params[r * pp + c / g];
                        let err = (w[r * cols + c] - back[r * cols + c]).abs();
                        assert!(err <= s / 2.0 * (1.0 + 1e-5), "bits {bits} group {group:?}");
                        let qmax = (1 << (bits - 1)) - 1;
                        assert!(i32::from(m.codes[r * cols + c]).abs() <= qmax);
                    }
                }
            }
        }
    }

    #[test]
    fn groups_never_lose_to_per_channel_and_more_bits_help() {
        let (rows, cols) = (16, 256);
        let mut w = random(rows * cols, 2);
        // Outliers make the per-channel scale coarse; groups confine them.
        for r in 0..rows {
            w[r * cols + r] = 1.5;
        }
        let err = |bits, group| {
            crate::layers::lowbit_matrix::squared_error(&w, &quantize(&w, rows, cols, bits, group))
        };
        assert!(err(4, Some(64)) < err(4, None));
        assert!(err(4, Some(64)) <= err(4, Some(128)));
        assert!(err(6, None) < err(4, None));
    }

    #[test]
    fn zero_rows_give_zero_scale_and_codes() {
        let m = quantize(&[0.0; 8], 2, 4, 4, None);
        assert!(m.codes.iter().all(|&q| q == 0) && m.params == [0.0, 0.0]);
    }
}
