//! Offline weight quantization: f32 `[N][K]` → s8 with one symmetric scale per output channel.

/// s8 weights, row-major `[n][k]`, with one scale per row: `w[n][k] ≈ values[n][k] · scales[n]`.
#[derive(Clone, Debug, PartialEq)]
pub struct PerChannelI8 {
    pub values: Vec<i8>,
    pub scales: Vec<f32>,
}

/// Quantizes each output channel (row of the PyTorch `Linear` weight `[n][k]`) symmetrically:
/// `scale = max|w_row| / 127`, `q = round_half_away_from_zero(w / scale)` clamped to ±127.
/// An all-zero row gets scale 0 and zero codes.
pub fn quantize_per_output_channel(w: &[f32], n: usize, k: usize) -> PerChannelI8 {
    assert_eq!(w.len(), n * k, "weights must be N×K = {n}×{k}");
    let mut values = vec![0i8; n * k];
    let mut scales = vec![0.0f32; n];
    if k == 0 {
        return PerChannelI8 { values, scales };
    }
    for ((row, q_row), scale) in w
        .chunks_exact(k)
        .zip(values.chunks_exact_mut(k))
        .zip(scales.iter_mut())
    {
        let amax = row.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        if amax == 0.0 || !amax.is_finite() {
            assert!(
                amax == 0.0,
                "non-finite weight in quantize_per_output_channel"
            );
            continue;
        }
        *scale = amax / 127.0;
        for (q, &v) in q_row.iter_mut().zip(row) {
            *q = (v / *scale).round().clamp(-127.0, 127.0) as i8;
        }
    }
    PerChannelI8 { values, scales }
}
