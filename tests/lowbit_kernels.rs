//! Every low-bit kernel path equals the packing-independent reference bit for bit, for every
//! code width, group layout, batch size and ragged shape.

use quantserve::kernels::int8::{Activation, Isa};
use quantserve::kernels::lowbit::{
    LowBitActivations, gemm, gemm_binary_lut, reference, uses_binary_lut,
};
use quantserve::quant::lowbit::{LowBitFormat, LowBitMatrix, pack_matrix};
use quantserve::quant::{bcq, ternary, uniform};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn f32(&mut self) -> f32 {
        self.next() as f32 / (1u64 << 31) as f32 - 0.5
    }
}

fn quantize(format: LowBitFormat, w: &[f32], n: usize, k: usize) -> LowBitMatrix {
    match format {
        LowBitFormat::Uniform { bits, group } => uniform::quantize(w, n, k, bits, group),
        LowBitFormat::Ternary => ternary::quantize(w, n, k, true),
        LowBitFormat::Bcq { planes } => bcq::quantize(w, n, k, planes, 2),
    }
}

#[test]
fn every_path_equals_the_reference() {
    let formats = [
        LowBitFormat::Uniform {
            bits: 4,
            group: None,
        },
        LowBitFormat::Uniform {
            bits: 4,
            group: Some(64),
        },
        LowBitFormat::Uniform {
            bits: 6,
            group: None,
        },
        LowBitFormat::Uniform {
            bits: 6,
            group: Some(128),
        },
        LowBitFormat::Ternary,
        LowBitFormat::Bcq { planes: 1 },
        LowBitFormat::Bcq { planes: 3 },
    ];
    let isas = Isa::available();
    let mut rng = Rng(7);
    let mut luts = 0;
    for format in formats {
        for (n, k) in [(1, 5), (17, 64), (70, 100), (130, 200)] {
            let w: Vec<f32> = (0..n * k).map(|_| rng.f32()).collect();
            let m = quantize(format, &w, n, k);
            let packed = pack_matrix(&m);
            let bias: Vec<f32> = (0..n).map(|_| rng.f32()).collect();
            for rows in [1, 2, 3, 4, 5, 9] {
                let x: Vec<i8> = (0..rows * k).map(|_| (rng.next() % 255) as i8).collect();
                let x: Vec<i8> = x.into_iter().map(|v| v.max(-127)).collect();
                let scales: Vec<f32> = (0..rows).map(|_| rng.f32().abs() + 0.01).collect();
                let a = LowBitActivations::from_codes(&x, &scales, k, &packed);
                // Every fused activation, in turn.
                let act = [Activation::None, Activation::Relu, Activation::Gelu][rows % 3];
                let group = match format {
                    LowBitFormat::Uniform { group: Some(g), .. } => g,
                    _ => k,
                };
                let want = reference(
                    &a,
                    &m.codes,
                    &m.params,
                    n,
                    k,
                    format.planes(),
                    group,
                    Some(&bias),
                    act,
                );
                for &isa in &isas {
                    let mut got = vec![f32::NAN; rows * n];
                    gemm(isa, &a, &packed, Some(&bias), act, &mut got, n);
                    let same = got
                        .iter()
                        .zip(&want)
                        .all(|(a, b)| a.to_bits() == b.to_bits());
                    assert!(
                        same,
                        "{} {isa} n={n} k={k} rows={rows}",
                        format.descriptor()
                    );
                    // Binary planes at batch 1: the lookup-table kernel and the shift-and one.
                    for lut in [false, true] {
                        luts += usize::from(lut && uses_binary_lut(isa, &a, &packed, true));
                        let mut alt = vec![f32::NAN; rows * n];
                        gemm_binary_lut(isa, &a, &packed, Some(&bias), act, &mut alt, n, lut);
                        let same = alt
                            .iter()
                            .zip(&want)
                            .all(|(a, b)| a.to_bits() == b.to_bits());
                        assert!(same, "{} {isa} lut={lut} n={n} k={k}", format.descriptor());
                    }
                }
            }
        }
    }
    // On CPUs with AVX-512 VBMI and GFNI (the project machine) the lookup kernel must have run.
    eprintln!("{luts} cases ran the binary lookup-table kernel");
}

#[test]
fn the_reference_is_the_dequantized_product() {
    // The kernels' formula, checked once against plain f32 arithmetic on dequantized weights.
    let (n, k, rows) = (9, 130, 3);
    let mut rng = Rng(3);
    let w: Vec<f32> = (0..n * k).map(|_| rng.f32()).collect();
    for format in [
        LowBitFormat::Uniform {
            bits: 4,
            group: Some(64),
        },
        LowBitFormat::Bcq { planes: 2 },
    ] {
        let m = quantize(format, &w, n, k);
        let packed = pack_matrix(&m);
        let x: Vec<i8> = (0..rows * k)
            .map(|i| ((i * 37) % 255) as i8)
            .map(|v| v.max(-127))
            .collect();
        let xs = vec![0.01f32; rows];
        let a = LowBitActivations::from_codes(&x, &xs, k, &packed);
        let mut got = vec![0.0; rows * n];
        gemm(
            Isa::Scalar,
            &a,
            &packed,
            None,
            Activation::None,
            &mut got,
            n,
        );
        let deq = m.dequantize();
        for r in 0..rows {
            for c in 0..n {
                let want: f32 = (0..k)
                    .map(|kk| deq[c * k + kk] * f32::from(x[r * k + kk]) * 0.01)
                    .sum();
                assert!(
                    (got[r * n + c] - want).abs() < 1e-3 * (1.0 + want.abs()),
                    "{} {r} {c}",
                    format.descriptor()
                );
            }
        }
    }
}
