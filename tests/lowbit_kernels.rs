//! Every low-bit kernel path equals the packing-independent reference bit for bit, for every
//! code width, group layout, batch size and ragged shape.

use quantserve::kernels::int8::{Activation, Isa};
use quantserve::kernels::lowbit::{
    LowBitActivations, gemm, gemm_binary_lut, reference, uses_binary_lut,
};
use quantserve::layers::lowbit::pack_matrix;
use quantserve::layers::{LowBitFormat, LowBitMatrix};
use quantserve::schemes::{bcq, ternary, uniform};

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

/// Every ISA path this CPU has (all four on the project machine), saying which are skipped.
fn paths() -> Vec<Isa> {
    Isa::ALL
        .into_iter()
        .filter(|isa| {
            let ok = isa.is_available();
            if !ok {
                eprintln!("skipping {isa}: this CPU lacks {}", isa.required_features());
            }
            ok
        })
        .collect()
}

fn same_bits(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(a, b)| a.to_bits() == b.to_bits())
}

/// Runs `m` × activations `x` (`rows × k` signed codes) on every path, with and without the
/// binary lookup-table kernel, for every fused activation, and compares with the reference bit
/// for bit. Returns how many calls ran the lookup-table kernel.
fn check_all_paths(m: &LowBitMatrix, x: &[i8], rows: usize, bias: &[f32], label: &str) -> usize {
    let (n, k, format) = (m.rows, m.cols, m.format);
    let packed = pack_matrix(m);
    let scales: Vec<f32> = (0..rows).map(|r| 0.01 + 0.003 * r as f32).collect();
    let a = LowBitActivations::from_codes(x, &scales, k, &packed);
    let group = match format {
        LowBitFormat::Uniform { group: Some(g), .. } => g,
        _ => k,
    };
    let mut luts = 0;
    for act in [Activation::None, Activation::Relu, Activation::Gelu] {
        for bias in [None, Some(bias)] {
            let want = reference(
                &a,
                &m.codes,
                &m.params,
                n,
                k,
                format.planes(),
                group,
                bias,
                act,
            );
            for isa in paths() {
                let mut got = vec![f32::NAN; rows * n];
                gemm(isa, &a, &packed, bias, act, &mut got, n);
                assert!(
                    same_bits(&got, &want),
                    "{label}: {} {isa} n={n} k={k} rows={rows} {act:?} bias={}",
                    format.descriptor(),
                    bias.is_some()
                );
                // Binary planes at batch 1: the lookup-table kernel and the shift-and one.
                for lut in [false, true] {
                    luts += usize::from(lut && uses_binary_lut(isa, &a, &packed, true));
                    let mut alt = vec![f32::NAN; rows * n];
                    gemm_binary_lut(isa, &a, &packed, bias, act, &mut alt, n, lut);
                    assert!(
                        same_bits(&alt, &want),
                        "{label}: {} {isa} lut={lut} n={n} k={k} rows={rows} {act:?}",
                        format.descriptor()
                    );
                }
            }
        }
    }
    luts
}

const FORMATS: [LowBitFormat; 12] = [
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
    // Not a serving scheme, but the kernels take it: 8-bit codes up to 255 (the AVX2 split
    // pass) and 5/7-bit codes on the byte layout.
    LowBitFormat::Uniform {
        bits: 8,
        group: None,
    },
    LowBitFormat::Uniform {
        bits: 8,
        group: Some(64),
    },
    LowBitFormat::Uniform {
        bits: 5,
        group: None,
    },
    LowBitFormat::Uniform {
        bits: 7,
        group: Some(64),
    },
    LowBitFormat::Ternary,
    LowBitFormat::Bcq { planes: 1 },
    LowBitFormat::Bcq { planes: 3 },
    LowBitFormat::Bcq { planes: 4 },
];

#[test]
fn every_path_equals_the_reference() {
    let mut rng = Rng(7);
    let mut luts = 0;
    for format in FORMATS {
        // Ragged N (a partial ymm, a partial zmm, several tiles) and K (padding inside a group).
        for (n, k) in [(1, 5), (9, 64), (17, 64), (70, 100), (130, 200), (67, 320)] {
            let w: Vec<f32> = (0..n * k).map(|_| rng.f32()).collect();
            let m = quantize(format, &w, n, k);
            let bias: Vec<f32> = (0..n).map(|_| rng.f32()).collect();
            for rows in 1..=9 {
                let x: Vec<i8> = (0..rows * k)
                    .map(|_| ((rng.next() % 255) as i8).max(-127))
                    .collect();
                luts += check_all_paths(&m, &x, rows, &bias, "random");
            }
        }
    }
    // On CPUs with AVX-512 VBMI and GFNI (the project machine) the lookup kernel must have run.
    eprintln!("{luts} cases ran the binary lookup-table kernel");
}

/// The largest code of every format against the extreme activations, where a saturating s16
/// (`vpmaddubsw`) or a wrong sign extension would show: all-max, all-min and alternating codes
/// times −128, 127 and alternating activations (−128 is outside what the quantizer produces,
/// but the kernels must still be exact).
#[test]
fn every_path_is_exact_at_the_code_and_activation_extremes() {
    let (n, k) = (70, 256);
    for format in FORMATS {
        let qmax = match format {
            LowBitFormat::Uniform { bits, .. } => ((1i32 << (bits - 1)) - 1) as i8,
            _ => 1,
        };
        let qmin = match format {
            LowBitFormat::Bcq { .. } => -1,
            _ => -qmax,
        };
        let params = vec![0.25f32; n * format.params_per_row(k)];
        let bias = vec![0.5f32; n];
        let len = n * format.planes() * k;
        let code_sets: [Vec<i8>; 3] = [
            vec![qmax; len],
            vec![qmin; len],
            (0..len)
                .map(|i| if i % 3 == 0 { qmin } else { qmax })
                .collect(),
        ];
        for codes in code_sets {
            let m = LowBitMatrix {
                format,
                rows: n,
                cols: k,
                codes,
                params: params.clone(),
            };
            for rows in [1, 2, 5] {
                for x in [
                    vec![-128i8; rows * k],
                    vec![127i8; rows * k],
                    (0..rows * k)
                        .map(|i| if i % 2 == 0 { -128 } else { 127 })
                        .collect(),
                ] {
                    check_all_paths(&m, &x, rows, &bias, "extremes");
                }
            }
        }
    }
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

/// Vocabulary shortlists: `select_outputs` copies chosen columns (every code width, the 6-bit
/// units included) and every path still equals the reference on those rows.
#[test]
fn selected_outputs_equal_the_reference_on_those_rows() {
    let (n, k, rows) = (70, 200, 3);
    let mut rng = Rng(11);
    let w: Vec<f32> = (0..n * k).map(|_| rng.f32()).collect();
    let ids = [69u32, 0, 5, 5, 33, 17, 64];
    for format in FORMATS {
        let m = quantize(format, &w, n, k);
        let (per_codes, per_params) = (format.planes() * k, format.params_per_row(k));
        let subset = LowBitMatrix {
            format,
            rows: ids.len(),
            cols: k,
            codes: ids
                .iter()
                .flat_map(|&i| m.codes[i as usize * per_codes..][..per_codes].to_vec())
                .collect(),
            params: ids
                .iter()
                .flat_map(|&i| m.params[i as usize * per_params..][..per_params].to_vec())
                .collect(),
        };
        let packed = pack_matrix(&m).select_outputs(&ids);
        let x: Vec<i8> = (0..rows * k)
            .map(|_| ((rng.next() % 255) as i8).max(-127))
            .collect();
        let a = LowBitActivations::from_codes(&x, &[0.02, 0.03, 0.05], k, &packed);
        let group = match format {
            LowBitFormat::Uniform { group: Some(g), .. } => g,
            _ => k,
        };
        let want = reference(
            &a,
            &subset.codes,
            &subset.params,
            ids.len(),
            k,
            format.planes(),
            group,
            None,
            Activation::None,
        );
        for isa in paths() {
            let mut got = vec![f32::NAN; rows * ids.len()];
            gemm(
                isa,
                &a,
                &packed,
                None,
                Activation::None,
                &mut got,
                ids.len(),
            );
            assert!(same_bits(&got, &want), "{} {isa}", format.descriptor());
        }
    }
}

/// int6 (and int5) weights stay 6 bits per code in memory: three 64-byte lines per 16 k of a
/// 16-column block.
#[test]
fn int6_is_packed_in_six_bits() {
    let (n, k) = (64, 128);
    let w: Vec<f32> = (0..n * k)
        .map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5)
        .collect();
    for bits in [5, 6] {
        let packed = pack_matrix(&uniform::quantize(&w, n, k, bits, None));
        assert_eq!(packed.bits(), 6);
        assert_eq!(packed.bytes(), n * k * 6 / 8 + n * 4, "int{bits}");
    }
}
