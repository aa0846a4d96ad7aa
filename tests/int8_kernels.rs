//! The int8 kernels against independent references, on every ISA path this CPU has: bit-identical
//! s32 accumulators and f32 outputs across paths, batch compositions and thread counts.

use proptest::prelude::*;
use quantserve::kernels::int8::quantize::quantize_per_output_channel;
use quantserve::kernels::int8::{
    Activation, Epilogue, Isa, IsaError, PackedI8Weights, QuantizedActivations, erf, gelu, gemm,
    gemm_add, gemm_s32, gemm_s32_reference, isa_from_setting, layer_norm_quantize,
    quantize_activations,
};
use quantserve::kernels::ops::layer_norm;

/// Deterministic data from a seed (proptest then only has to shrink shapes and seeds).
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        // splitmix64
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [-1, 1).
    fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }

    fn f32s(&mut self, len: usize, amplitude: f32) -> Vec<f32> {
        (0..len).map(|_| self.unit() * amplitude).collect()
    }

    /// Full-range s8 codes including −128, which `pack` accepts (the quantizer never makes it).
    fn i8s(&mut self, len: usize) -> Vec<i8> {
        (0..len).map(|_| self.next_u64() as i8).collect()
    }
}

struct Case {
    m: usize,
    n: usize,
    k: usize,
    x: Vec<f32>,
    w: Vec<i8>,
    col_scales: Vec<f32>,
    bias: Vec<f32>,
    residual: Vec<f32>,
    out_stride: usize,
}

impl Case {
    fn new(m: usize, n: usize, k: usize, seed: u64) -> Self {
        let mut rng = Rng(seed);
        let mut x = rng.f32s(m * k, 4.0);
        // Make some rows reach the quantization extremes (u8 1 and 255) and one row all zero.
        if m > 1 && k > 0 {
            x[..k].fill(0.0);
            for v in &mut x[k..2 * k] {
                *v = if rng.next_u64() & 1 == 0 { 3.0 } else { -3.0 };
            }
        }
        let mut w = rng.i8s(n * k);
        if n > 0 && k > 0 {
            // A column of extreme weights against the extreme row: the worst case for s16
            // saturation in `vpmaddubsw`.
            for (i, v) in w[..k].iter_mut().enumerate() {
                *v = if i.is_multiple_of(2) { -128 } else { 127 };
            }
        }
        let col_scales = (0..n).map(|_| rng.unit().abs() * 0.01 + 1e-4).collect();
        let out_stride = n + (seed % 3) as usize;
        Self {
            m,
            n,
            k,
            x,
            w,
            col_scales,
            bias: rng.f32s(n, 2.0),
            residual: rng.f32s(m * out_stride, 1.0),
            out_stride,
        }
    }

    /// The codes the quantizer makes (±127): −128 becomes −127. Tested beside full-range codes:
    /// the AVX2 path's `vpmaddubsw` pair sums reach their s16 limits at different codes.
    fn with_quantizer_codes(mut self, yes: bool) -> Self {
        if yes {
            for v in &mut self.w {
                *v = (*v).max(-127);
            }
        }
        self
    }

    fn quantized(&self) -> QuantizedActivations {
        let mut q = QuantizedActivations::new();
        quantize_activations(Isa::Scalar, &self.x, self.m, self.k, &mut q);
        q
    }

    fn packed(&self) -> PackedI8Weights {
        PackedI8Weights::pack(&self.w, self.n, self.k, &self.col_scales)
    }

    fn epilogue(&self, bias: bool, activation: Activation, residual: bool) -> Epilogue<'_> {
        Epilogue {
            bias: bias.then_some(&self.bias[..]),
            activation,
            residual: residual.then_some(&self.residual[..]),
        }
    }
}

fn run_f32(
    isa: Isa,
    a: &QuantizedActivations,
    w: &PackedI8Weights,
    epi: &Epilogue,
    stride: usize,
) -> Vec<f32> {
    // NaN-filled so that a missed element shows; the padding between rows must stay untouched.
    let mut out = vec![f32::NAN; a.m() * stride];
    gemm(isa, a, w, epi, &mut out, stride);
    out
}

fn run_s32(isa: Isa, a: &QuantizedActivations, w: &PackedI8Weights) -> Vec<i32> {
    let mut out = vec![i32::MIN; a.m() * w.n()];
    gemm_s32(isa, a, w, &mut out);
    out
}

/// The first index where two f32 slices differ bitwise, with both values (short failure output).
fn first_difference(got: &[f32], want: &[f32]) -> Option<(usize, f32, f32)> {
    if got.len() != want.len() {
        return Some((usize::MAX, got.len() as f32, want.len() as f32));
    }
    got.iter()
        .zip(want)
        .position(|(g, w)| g.to_bits() != w.to_bits())
        .map(|i| (i, got[i], want[i]))
}

fn first_difference_i32(got: &[i32], want: &[i32]) -> Option<(usize, i32, i32)> {
    if got.len() != want.len() {
        return Some((usize::MAX, got.len() as i32, want.len() as i32));
    }
    got.iter()
        .zip(want)
        .position(|(g, w)| g != w)
        .map(|i| (i, got[i], want[i]))
}

/// erf in f64: Taylor series below 3, continued fraction for erfc above (error < 1e-13).
fn erf_f64(x: f64) -> f64 {
    let t = x.abs();
    let r = if t < 3.0 {
        let (mut term, mut sum, mut n) = (t, t, 0.0f64);
        while term.abs() > 1e-17 * sum.abs() {
            n += 1.0;
            term *= -t * t / n;
            sum += term / (2.0 * n + 1.0);
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    } else {
        // erfc(t) = exp(−t²)/√π · 1/(t + (1/2)/(t + 1/(t + (3/2)/(t + 2/(t + …)))))
        let mut f = t;
        for i in (1..200).rev() {
            f = t + (i as f64 / 2.0) / f;
        }
        1.0 - (-t * t).exp() / std::f64::consts::PI.sqrt() / f
    };
    r.copysign(x)
}

fn gelu_f64(x: f64) -> f64 {
    0.5 * x * (1.0 + erf_f64(x / std::f64::consts::SQRT_2))
}

/// The expected f32 output from the reference accumulators, computed independently of the
/// kernels' epilogue (GELU in f64).
fn expected_output(case: &Case, a: &QuantizedActivations, epi: &Epilogue, s32: &[i32]) -> Vec<f64> {
    let (m, n) = (case.m, case.n);
    let mut out = vec![0.0f64; m * n];
    for row in 0..m {
        for col in 0..n {
            let scale = a.row_scales()[row] * case.col_scales[col];
            let mut y = (s32[row * n + col] as f32 * scale) as f64;
            if let Some(b) = epi.bias {
                y = (y as f32 + b[col]) as f64;
            }
            y = match epi.activation {
                Activation::None => y,
                Activation::Relu => y.max(0.0),
                Activation::Gelu => gelu_f64(y),
                Activation::Silu => y / (1.0 + (-y).exp()),
                other => unreachable!("{other:?} is not among ACTIVATIONS"),
            };
            if let Some(r) = epi.residual {
                y += r[row * case.out_stride + col] as f64;
            }
            out[row * n + col] = y;
        }
    }
    out
}

const ACTIVATIONS: [Activation; 4] = [
    Activation::None,
    Activation::Relu,
    Activation::Gelu,
    Activation::Silu,
];

/// Shapes around the kernel's block sizes (NR = 48, MR = 8, GEMV ≤ 4 rows, K-quads of 4) and
/// the ragged sizes the brief asks for.
fn dim_m() -> impl Strategy<Value = usize> {
    prop_oneof![
        prop::sample::select(vec![1usize, 2, 3, 4, 5, 7, 8, 9, 16, 17, 33]),
        1usize..40
    ]
}

fn dim_n() -> impl Strategy<Value = usize> {
    prop_oneof![
        prop::sample::select(vec![1usize, 3, 16, 17, 47, 48, 49, 96, 255, 769]),
        1usize..300
    ]
}

fn dim_k() -> impl Strategy<Value = usize> {
    prop_oneof![
        prop::sample::select(vec![1usize, 2, 3, 4, 5, 17, 64, 255, 769]),
        1usize..300
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 48,
        // Failing cases are printed; no regression file next to the tests.
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Every path's s32 accumulators equal the plain triple loop, bit for bit, and every path's
    /// f32 output equals the scalar path's, bit for bit, for each epilogue variant.
    #[test]
    fn every_isa_matches_the_references(
        m in dim_m(), n in dim_n(), k in dim_k(), seed in any::<u64>(),
        bias in any::<bool>(), residual in any::<bool>(), act in 0usize..4,
        quantizer_codes in any::<bool>(),
    ) {
        let case = Case::new(m, n, k, seed).with_quantizer_codes(quantizer_codes);
        let a = case.quantized();
        let w = case.packed();
        let reference = gemm_s32_reference(&a, &case.w, n);
        let epi = case.epilogue(bias, ACTIVATIONS[act], residual);
        let scalar_out = run_f32(Isa::Scalar, &a, &w, &epi, case.out_stride);

        let expected = expected_output(&case, &a, &epi, &reference);
        for row in 0..m {
            for col in 0..n {
                let got = scalar_out[row * case.out_stride + col] as f64;
                let want = expected[row * n + col];
                let tolerance = if matches!(epi.activation, Activation::Gelu | Activation::Silu) { 2e-6 * want.abs().max(1.0) } else { 1e-6 * want.abs().max(1e-3) };
                prop_assert!((got - want).abs() <= tolerance, "row {row} col {col}: {got} vs {want}");
            }
            for col in n..case.out_stride {
                prop_assert!(scalar_out[row * case.out_stride + col].is_nan(), "stride padding written");
            }
        }

        for isa in Isa::available() {
            prop_assert_eq!(first_difference_i32(&run_s32(isa, &a, &w), &reference), None, "s32 on {}", isa);
            let out = run_f32(isa, &a, &w, &epi, case.out_stride);
            prop_assert_eq!(first_difference(&out, &scalar_out), None, "f32 on {}", isa);
        }
    }

    /// Row i of a batch equals row i computed alone and in a sub-batch, on every path
    /// (the batch uses the GEMM tiles, a single row the GEMV tile).
    #[test]
    fn rows_do_not_depend_on_their_batch(
        m in 2usize..40, n in dim_n(), k in dim_k(), seed in any::<u64>(), act in 0usize..4,
        quantizer_codes in any::<bool>(),
    ) {
        let case = Case::new(m, n, k, seed).with_quantizer_codes(quantizer_codes);
        let w = case.packed();
        let epi = Epilogue { bias: Some(&case.bias), activation: ACTIVATIONS[act], residual: None };
        for isa in Isa::available() {
            let mut a = QuantizedActivations::new();
            quantize_activations(isa, &case.x, m, k, &mut a);
            let batch = run_f32(isa, &a, &w, &epi, n);
            let mut single = QuantizedActivations::new();
            for row in [0, m / 2, m - 1] {
                quantize_activations(isa, &case.x[row * k..(row + 1) * k], 1, k, &mut single);
                let alone = run_f32(isa, &single, &w, &epi, n);
                prop_assert_eq!(first_difference(&alone, &batch[row * n..(row + 1) * n]), None, "row {} alone on {}", row, isa);
            }
            let (lo, hi) = (m / 3, m);
            quantize_activations(isa, &case.x[lo * k..hi * k], hi - lo, k, &mut single);
            let sub = run_f32(isa, &single, &w, &epi, n);
            prop_assert_eq!(first_difference(&sub, &batch[lo * n..hi * n]), None, "rows {}..{} on {}", lo, hi, isa);
        }
    }

    /// `gemm_add` (the residual added in the epilogue, in place) equals computing into a buffer
    /// with the output's old values as `residual`, bit for bit, on every path; the padding
    /// between rows is left alone.
    #[test]
    fn gemm_add_equals_a_residual_epilogue(
        m in dim_m(), n in dim_n(), k in dim_k(), seed in any::<u64>(), bias in any::<bool>(),
    ) {
        let case = Case::new(m, n, k, seed);
        let a = case.quantized();
        let w = case.packed();
        let epi = case.epilogue(bias, Activation::None, true);
        for isa in Isa::available() {
            let want = run_f32(isa, &a, &w, &epi, case.out_stride);
            let mut got = case.residual.clone();
            gemm_add(isa, &a, &w, epi.bias, &mut got, case.out_stride);
            for row in 0..m {
                let at = row * case.out_stride;
                prop_assert_eq!(first_difference(&got[at..at + n], &want[at..at + n]), None, "row {} on {}", row, isa);
                prop_assert_eq!(&got[at + n..at + case.out_stride], &case.residual[at + n..at + case.out_stride]);
            }
        }
    }

    /// Quantization gives the same bytes and scales on every path, and they follow the formula.
    #[test]
    fn activation_quantization_is_identical_on_every_path(
        m in 1usize..6, k in dim_k(), seed in any::<u64>(),
    ) {
        let case = Case::new(m, 1, k, seed);
        let reference = case.quantized();
        for row in 0..m {
            let x = &case.x[row * k..(row + 1) * k];
            let amax = x.iter().fold(0.0f32, |a, v| a.max(v.abs()));
            prop_assert_eq!(reference.row_scales()[row], amax / 127.0);
            let q = reference.row(row);
            prop_assert_eq!(q.len() % 4, 0);
            for (i, &v) in x.iter().enumerate() {
                let want = if amax == 0.0 { 0.0 } else { (v * (127.0 / amax)).round() };
                prop_assert_eq!(q[i] as i32 - 128, want as i32);
            }
            prop_assert!(q[k..].iter().all(|&b| b == 128), "padding is the zero point");
        }
        for isa in Isa::available() {
            let mut q = QuantizedActivations::new();
            quantize_activations(isa, &case.x, m, k, &mut q);
            prop_assert_eq!(q.row_scales(), reference.row_scales());
            for row in 0..m {
                prop_assert_eq!(q.row(row), reference.row(row), "row {} on {}", row, isa);
            }
        }
    }
}

/// The fused layer norm + quantization gives the bits of the two passes it replaces, on every
/// path, serially and over a pool (rows split into tasks).
#[test]
fn layer_norm_quantize_equals_norm_then_quantize() {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    for (rows, dim, seed) in [
        (1, 384, 1),
        (7, 37, 2),
        (130, 384, 3),
        (90, 768, 4),
        (0, 64, 5),
    ] {
        let mut rng = Rng(seed);
        let x = rng.f32s(rows * dim, 6.0);
        let gamma = rng.f32s(dim, 2.0);
        let beta = rng.f32s(dim, 1.0);
        let mut normed = x.clone();
        layer_norm(&mut normed, dim, &gamma, &beta, 1e-12);
        let mut want = QuantizedActivations::new();
        quantize_activations(Isa::Scalar, &normed, rows, dim, &mut want);
        for isa in Isa::available() {
            for threads in [1, 2] {
                let mut got_x = x.clone();
                let mut got = QuantizedActivations::new();
                let mut run =
                    || layer_norm_quantize(isa, &mut got_x, dim, &gamma, &beta, 1e-12, &mut got);
                if threads == 1 {
                    run()
                } else {
                    pool.install(run)
                }
                let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                assert_eq!(
                    bits(&got_x),
                    bits(&normed),
                    "{rows}×{dim} on {isa}, {threads} threads"
                );
                assert_eq!((got.m(), got.k()), (rows, dim));
                assert_eq!(got.row_scales(), want.row_scales(), "{rows}×{dim} on {isa}");
                for row in 0..rows {
                    assert_eq!(
                        got.row(row),
                        want.row(row),
                        "row {row} of {rows}×{dim} on {isa}"
                    );
                }
            }
        }
    }
}

/// Whether the AMX path runs here; if not, says so (the other ISA tests still run).
fn amx_or_skip(test: &str) -> bool {
    let ok = Isa::Amx.is_available();
    if !ok {
        eprintln!(
            "skipping {test}: AMX int8 is not usable on this machine (needs {}); the other ISA \
             paths are tested as usual",
            Isa::Amx.required_features()
        );
    }
    ok
}

/// Around the AMX blocks: 16-row tiles, 32-row blocks, VNNI for the last M mod 16 rows.
fn amx_m() -> impl Strategy<Value = usize> {
    prop_oneof![
        prop::sample::select(vec![
            1usize, 15, 16, 17, 31, 32, 33, 47, 48, 49, 63, 64, 65, 70
        ]),
        1usize..=70
    ]
}

/// K chunks of 64 (tails when not a multiple), K blocks of 1024.
fn amx_k() -> impl Strategy<Value = usize> {
    prop_oneof![
        prop::sample::select(vec![1usize, 4, 60, 63, 64, 65, 128, 200, 769, 1088, 1100]),
        1usize..300
    ]
}

/// The AMX path's s32 accumulators equal the triple loop and its f32 outputs the scalar path's,
/// bit for bit, for every epilogue variant, on ragged M, N and K.
#[test]
fn amx_matches_the_references_on_ragged_shapes() {
    if !amx_or_skip("amx_matches_the_references_on_ragged_shapes") {
        return;
    }
    let config = ProptestConfig {
        cases: 96,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    let shapes = (amx_m(), dim_n(), amx_k(), any::<u64>());
    let epilogues = (any::<bool>(), any::<bool>(), 0usize..3);
    proptest::test_runner::TestRunner::new(config)
        .run(
            &(shapes, epilogues),
            |((m, n, k, seed), (bias, residual, act))| {
                let case = Case::new(m, n, k, seed);
                let a = case.quantized();
                let w = case.packed();
                let reference = gemm_s32_reference(&a, &case.w, n);
                prop_assert_eq!(
                    first_difference_i32(&run_s32(Isa::Amx, &a, &w), &reference),
                    None,
                    "s32 {}×{}×{}",
                    m,
                    n,
                    k
                );
                let epi = case.epilogue(bias, ACTIVATIONS[act], residual);
                let want = run_f32(Isa::Scalar, &a, &w, &epi, case.out_stride);
                let got = run_f32(Isa::Amx, &a, &w, &epi, case.out_stride);
                prop_assert_eq!(
                    first_difference(&got, &want),
                    None,
                    "f32 {}×{}×{} stride {}",
                    m,
                    n,
                    k,
                    case.out_stride
                );
                Ok(())
            },
        )
        .unwrap();
}

/// Activations at 0 / 128 / 255 as u8 against weights −128 / 127, every epilogue with a row
/// stride > N; and sums beyond i32 (K = 140 000), which wrap in every path alike.
#[test]
fn amx_extreme_values_match() {
    if !amx_or_skip("amx_extreme_values_match") {
        return;
    }
    for &(m, n, k) in &[
        (16, 17, 64),
        (17, 48, 65),
        (31, 97, 255),
        (33, 150, 1100),
        (64, 49, 3),
    ] {
        let mut case = Case::new(m, n, k, 11);
        for (i, x) in case.x.iter_mut().enumerate() {
            *x = [1.0, -1.0, 0.0, 1.0][(i / 7) % 4];
        }
        for (i, v) in case.w.iter_mut().enumerate() {
            *v = if (i / 3) % 2 == 0 { -128 } else { 127 };
        }
        let a = case.quantized();
        let w = case.packed();
        assert!(
            a.row(0)[..k]
                .iter()
                .all(|&b| b == 255 || b == 1 || b == 128)
        );
        let reference = gemm_s32_reference(&a, &case.w, n);
        assert_eq!(
            first_difference_i32(&run_s32(Isa::Amx, &a, &w), &reference),
            None,
            "{m}×{n}×{k} s32"
        );
        for act in ACTIVATIONS {
            for (bias, residual) in [(false, false), (true, true), (true, false), (false, true)] {
                let epi = case.epilogue(bias, act, residual);
                // The case's residual covers its own stride, which is N + 2 for seed 11.
                let stride = case.out_stride;
                assert!(stride > n);
                let want = run_f32(Isa::Scalar, &a, &w, &epi, stride);
                let got = run_f32(Isa::Amx, &a, &w, &epi, stride);
                assert_eq!(first_difference(&got, &want), None, "{m}×{n}×{k} {act:?}");
            }
        }
    }
    let (m, n, k) = (16, 16, 140_000);
    let mut a = QuantizedActivations::new();
    quantize_activations(Isa::Scalar, &vec![1.0; m * k], m, k, &mut a);
    let w_codes = vec![-128i8; n * k];
    let w = PackedI8Weights::pack(&w_codes, n, k, &vec![1.0; n]);
    let reference = gemm_s32_reference(&a, &w_codes, n);
    assert_eq!(
        first_difference_i32(&run_s32(Isa::Amx, &a, &w), &reference),
        None,
        "wrapping sums"
    );
}

#[test]
fn amx_setting_is_honoured_or_refused() {
    assert_eq!("amx".parse::<Isa>(), Ok(Isa::Amx));
    assert_eq!(" AMX ".parse::<Isa>(), Ok(Isa::Amx));
    assert_eq!(Isa::ALL[0], Isa::Amx, "fastest first");
    match isa_from_setting(Some("amx")) {
        Ok(isa) => {
            assert_eq!(isa, Isa::Amx);
            assert_eq!(isa_from_setting(Some("auto")), Ok(Isa::Amx));
        }
        Err(e) => {
            assert!(!Isa::Amx.is_available());
            assert_eq!(e, IsaError::Unavailable(Isa::Amx));
            assert!(e.to_string().contains("amx-int8"), "{e}");
            assert_ne!(isa_from_setting(Some("auto")), Ok(Isa::Amx));
            eprintln!("amx refused here, as it should be: {e}");
        }
    }
    // The other paths stay selectable by name either way.
    for isa in Isa::available() {
        assert_eq!(isa_from_setting(Some(isa.name())), Ok(isa));
    }
}

#[test]
fn activation_quantization_rounds_exact_halves_away_from_zero() {
    // max |x| = 127 makes the multiplier exactly 1, so these are the rounding inputs themselves.
    let halves = [
        0.5f32,
        -0.5,
        1.5,
        -1.5,
        2.5,
        -2.5,
        126.5,
        -126.5,
        0.499_999_97,
        -0.499_999_97,
        2.499_999_8,
    ];
    let codes = [1, -1, 2, -2, 3, -3, 127, -127, 0, 0, 2];
    for len in [halves.len() + 1, 16, 17, 33, 40] {
        let mut x = vec![0.0f32; len];
        x[0] = -127.0;
        for (i, v) in x[1..].iter_mut().enumerate() {
            *v = halves[i % halves.len()];
        }
        for isa in Isa::available() {
            let mut q = QuantizedActivations::new();
            quantize_activations(isa, &x, 1, len, &mut q);
            assert_eq!(q.row_scales(), [1.0]);
            assert_eq!(q.row(0)[0], 1, "{isa}");
            for i in 1..len {
                let want = codes[(i - 1) % codes.len()];
                assert_eq!(q.row(0)[i] as i32 - 128, want, "{isa}: x = {}", x[i]);
            }
        }
    }
}

#[test]
fn large_shapes_match_on_every_isa_and_thread_count() {
    // Big enough for the threaded split (several M blocks and N chunks) and long K.
    for &(m, n, k) in &[
        (1, 769, 3071),
        (3, 1000, 768),
        (300, 200, 769),
        (520, 97, 64),
    ] {
        for quantizer_codes in [false, true] {
            let case = Case::new(m, n, k, (m * n * k) as u64).with_quantizer_codes(quantizer_codes);
            let a = case.quantized();
            let w = case.packed();
            let reference = gemm_s32_reference(&a, &case.w, n);
            let epi = case.epilogue(true, Activation::Gelu, true);
            let scalar = run_f32(Isa::Scalar, &a, &w, &epi, case.out_stride);
            for threads in [1, 2, 3] {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                pool.install(|| {
                    for isa in Isa::available() {
                        assert_eq!(
                            first_difference_i32(&run_s32(isa, &a, &w), &reference),
                            None,
                            "{m}×{n}×{k} s32 {isa} {threads} threads"
                        );
                        let out = run_f32(isa, &a, &w, &epi, case.out_stride);
                        assert_eq!(
                            first_difference(&out, &scalar),
                            None,
                            "{m}×{n}×{k} f32 {isa} {threads} threads"
                        );
                    }
                });
            }
        }
    }
}

/// The s16 and i32 extremes on every path: activations ±127 (u8 1 / 255) and 0 against codes
/// −128 / 127 / −127 in runs that put the largest pair sums into `vpmaddubsw`, and K = 200 000,
/// whose sums (and the AVX2 path's per-row start values) exceed i32 and must wrap alike.
#[test]
fn extreme_values_and_wrapping_sums_match_on_every_isa() {
    for &(m, n, k) in &[(3, 50, 200_000), (5, 97, 255), (1, 48, 8)] {
        let x: Vec<f32> = (0..m * k)
            .map(|i| [-1.0, -1.0, 1.0, 0.0, 1.0, -1.0][(i / 5) % 6])
            .collect();
        // Even columns follow row 0's signs (−128 against −1, 127 against +1: the largest
        // positive pair sums, and sums that outgrow i32); odd columns run an independent pattern.
        let w_codes: Vec<i8> = (0..n * k)
            .map(|i| {
                let (col, kk) = (i / k, i % k);
                if col % 2 == 0 {
                    match x[kk] {
                        v if v < 0.0 => -128,
                        v if v > 0.0 => 127,
                        _ => -127,
                    }
                } else {
                    [-128, -128, 127, -127, 127, 0][(i / 3) % 6]
                }
            })
            .collect();
        let mut a = QuantizedActivations::new();
        quantize_activations(Isa::Scalar, &x, m, k, &mut a);
        assert!(
            a.row(0)[..k]
                .iter()
                .all(|&b| b == 1 || b == 128 || b == 255)
        );
        let w = PackedI8Weights::pack(&w_codes, n, k, &vec![1.0; n]);
        let reference = gemm_s32_reference(&a, &w_codes, n);
        if k == 200_000 {
            let exact: i64 = (0..k)
                .map(|kk| (i64::from(a.row(0)[kk]) - 128) * i64::from(w_codes[kk]))
                .sum();
            assert!(
                exact.abs() > i64::from(i32::MAX),
                "K = {k} must overflow i32: {exact}"
            );
        }
        for isa in Isa::available() {
            assert_eq!(
                first_difference_i32(&run_s32(isa, &a, &w), &reference),
                None,
                "{m}×{n}×{k} s32 on {isa}"
            );
        }
    }
}

/// GELU through each path's vector epilogue: zero weights make the output equal to
/// `gelu(bias)`, so a bias sweep exercises the vector erf on every value range.
#[test]
fn vector_gelu_equals_scalar_gelu_and_pytorch_exact_gelu() {
    let mut xs: Vec<f32> = (-200_000..=200_000).map(|i| i as f32 * 6e-5).collect();
    xs.extend((-2000..=2000).map(|i| i as f32 * 0.01));
    xs.extend([
        0.0,
        -0.0,
        475.0 / 512.0,
        -475.0 / 512.0,
        1e-30,
        -1e-30,
        1e30,
        -1e30,
        50.0,
        -50.0,
    ]);
    let n = xs.len();
    let k = 4;
    let w = PackedI8Weights::pack(&vec![0i8; n * k], n, k, &vec![1.0; n]);
    let mut a = QuantizedActivations::new();
    quantize_activations(Isa::Scalar, &[1.0; 4], 1, k, &mut a);
    let epi = Epilogue {
        bias: Some(&xs),
        activation: Activation::Gelu,
        residual: None,
    };
    // The kernels see `0 · scale + x`, which turns −0.0 into +0.0; otherwise it is gelu(x).
    let scalar = run_f32(Isa::Scalar, &a, &w, &epi, n);
    for (&x, &g) in xs.iter().zip(&scalar) {
        assert_eq!(
            g.to_bits(),
            gelu(0.0 + x).to_bits(),
            "scalar path gelu({x})"
        );
    }
    for isa in Isa::available() {
        let out = run_f32(isa, &a, &w, &epi, n);
        assert_eq!(first_difference(&out, &scalar), None, "gelu on {isa}");
    }
    let mut worst = 0.0f64;
    for (&x, &g) in xs.iter().zip(&scalar) {
        let err = (g as f64 - gelu_f64(x as f64)).abs();
        assert!(
            err <= 1e-6 * (x.abs() as f64).max(1.0),
            "gelu({x}) = {g}, error {err:e}"
        );
        worst = worst.max(err);
    }
    println!("max |gelu − exact gelu| on [-12, 12]: {worst:e}");
}

#[test]
fn erf_is_within_two_ulp() {
    let mut worst_ulps = 0.0f64;
    let mut x = 1e-6f32;
    while x < 6.0 {
        for v in [x, -x] {
            let want = erf_f64(v as f64);
            let nearest = (want as f32).abs();
            let ulp = (f32::from_bits(nearest.to_bits() + 1) - nearest) as f64;
            let ulps = (erf(v) as f64 - want).abs() / ulp;
            worst_ulps = worst_ulps.max(ulps);
            assert!(
                ulps <= 2.0,
                "erf({v}) = {}, want {want} ({ulps} ulp)",
                erf(v)
            );
        }
        x = f32::from_bits(x.to_bits() + 97);
    }
    println!("erf max error: {worst_ulps:.3} ulp");
}

#[test]
fn relu_zero_and_negative_zero_match() {
    let xs = [0.0f32, -0.0, -1.0, 1.0, -1e-40, 1e-40];
    let n = xs.len();
    let w = PackedI8Weights::pack(&vec![0i8; n], n, 1, &vec![1.0; n]);
    let mut a = QuantizedActivations::new();
    quantize_activations(Isa::Scalar, &[1.0], 1, 1, &mut a);
    let epi = Epilogue {
        bias: Some(&xs),
        activation: Activation::Relu,
        residual: None,
    };
    let scalar = run_f32(Isa::Scalar, &a, &w, &epi, n);
    for isa in Isa::available() {
        assert_eq!(
            first_difference(&run_f32(isa, &a, &w, &epi, n), &scalar),
            None,
            "relu on {isa}"
        );
    }
}

#[test]
fn empty_and_degenerate_shapes() {
    for &(m, n, k) in &[(0, 5, 5), (5, 0, 5), (0, 0, 0), (3, 4, 0)] {
        let case = Case::new(m, n, k, 7);
        let a = case.quantized();
        let w = case.packed();
        for isa in Isa::available() {
            let out = run_f32(
                isa,
                &a,
                &w,
                &case.epilogue(true, Activation::None, false),
                n,
            );
            // With K = 0 the product is 0, so the output is the bias.
            for row in 0..m {
                assert_eq!(&out[row * n..(row + 1) * n], &case.bias[..]);
            }
        }
    }
}

#[test]
fn weight_quantizer_rounds_half_away_from_zero() {
    // Scales 1 and 0.5 are exact, so the halves below really are halves.
    let w = [
        127.0, 0.5, -0.5, 1.5, //
        -2.5, 0.49, -127.0, 3.0, //
        0.0, 0.0, 0.0, 0.0, //
        63.5, 0.25, -0.75, 1.25,
    ];
    let q = quantize_per_output_channel(&w, 4, 4);
    assert_eq!(q.scales, vec![1.0, 1.0, 0.0, 0.5]);
    assert_eq!(
        q.values,
        vec![127, 1, -1, 2, -3, 0, -127, 3, 0, 0, 0, 0, 127, 1, -2, 3]
    );
}

#[test]
fn packing_round_trips_and_selects_outputs() {
    let (n, k) = (101, 37);
    let case = Case::new(1, n, k, 99);
    let w = case.packed();
    assert_eq!((w.n(), w.k()), (n, k));
    for col in 0..n {
        for kk in 0..k {
            assert_eq!(w.weight(col, kk), case.w[col * k + kk]);
        }
        let colsum: i32 = case.w[col * k..(col + 1) * k]
            .iter()
            .map(|&v| v as i32)
            .sum();
        assert_eq!(w.col_compensation()[col], -128 * colsum);
    }
    // 3 panels of 48 columns × 40 padded K bytes, plus scales and compensation.
    assert_eq!(w.bytes(), 3 * 48 * 40 + 2 * 3 * 48 * 4);

    let ids = [100u32, 0, 47, 48, 5];
    let selected = w.select_outputs(&ids);
    let a = case.quantized();
    let full = run_s32(Isa::Scalar, &a, &w);
    let part = run_s32(Isa::best_available(), &a, &selected);
    let want: Vec<i32> = ids.iter().map(|&id| full[id as usize]).collect();
    assert_eq!(part, want);
    assert_eq!(
        selected.col_scales(),
        ids.map(|id| case.col_scales[id as usize])
    );
}

#[test]
fn isa_settings_are_parsed_and_unavailable_paths_refused() {
    assert_eq!("AVX2".parse::<Isa>(), Ok(Isa::Avx2));
    assert_eq!("avx512vnni".parse::<Isa>(), Ok(Isa::Avx512Vnni));
    assert!(matches!("sse2".parse::<Isa>(), Err(IsaError::Unknown(_))));
    assert_eq!(isa_from_setting(None), Ok(Isa::best_available()));
    assert_eq!(isa_from_setting(Some("auto")), Ok(Isa::best_available()));
    assert_eq!(isa_from_setting(Some("scalar")), Ok(Isa::Scalar));
    for isa in Isa::ALL {
        let result = isa_from_setting(Some(isa.name()));
        if isa.is_available() {
            assert_eq!(result, Ok(isa));
        } else {
            let message = result.unwrap_err().to_string();
            assert!(message.contains("lacks"), "{message}");
        }
    }
    println!("available int8 paths: {:?}", Isa::available());
}

#[test]
#[should_panic(expected = "activations have K=")]
fn mismatched_k_panics() {
    let a = Case::new(2, 3, 5, 1).quantized();
    let w = Case::new(2, 3, 6, 1).packed();
    let mut out = vec![0.0; 6];
    gemm(Isa::Scalar, &a, &w, &Epilogue::default(), &mut out, 3);
}
