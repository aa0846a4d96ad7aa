use super::emulator::Emulated;
use super::*;
use crate::kernels::int8::{Activation, Epilogue};

fn avx512() -> bool {
    let ok = Isa::Avx512Vnni.is_available();
    if !ok {
        eprintln!("skipping: the AMX driver needs AVX-512 VNNI for its epilogue");
    }
    ok
}

/// splitmix64 stream.
fn stream(seed: u64) -> impl FnMut() -> u64 {
    let mut s = seed;
    move || {
        s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

struct Case {
    a: QuantizedActivations,
    w: Vec<i8>,
    packed: PackedI8Weights,
    bias: Vec<f32>,
    residual: Vec<f32>,
    stride: usize,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Fill {
    Random,
    /// Activations at u8 255 / 1 / 128 (q = ±127, 0), weights 127 / −128 / −127.
    Extreme,
    /// Every activation q = +127 and every weight −128: the largest |Σ| (wraps i32 for
    /// K > 132 k).
    Largest,
}

fn case(m: usize, n: usize, k: usize, seed: u64, fill: Fill) -> Case {
    let mut next = stream(seed);
    let mut unit = move || (next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0;
    let x: Vec<f32> = (0..m * k)
        .map(|i| {
            let v = unit();
            match fill {
                Fill::Random => v * 3.0,
                Fill::Extreme => [1.0, -1.0, 0.0][i % 3],
                Fill::Largest => 1.0,
            }
        })
        .collect();
    let mut a = QuantizedActivations::new();
    super::super::quantize_activations(Isa::Scalar, &x, m, k, &mut a);
    let mut next = stream(seed ^ 0x5555);
    let w: Vec<i8> = (0..n * k)
        .map(|i| match fill {
            Fill::Random => next() as i8,
            Fill::Extreme => [127, -128, -127][i % 3],
            Fill::Largest => -128,
        })
        .collect();
    let scales: Vec<f32> = (0..n).map(|i| 1e-3 + i as f32 * 1e-5).collect();
    let packed = PackedI8Weights::pack(&w, n, k, &scales);
    let stride = n + (seed % 3) as usize;
    let mut next = stream(seed ^ 0xaaaa);
    let mut f = move || (next() >> 40) as f32 / (1u64 << 23) as f32 * 4.0 - 2.0;
    Case {
        a,
        w,
        packed,
        bias: (0..n).map(|_| f()).collect(),
        residual: (0..m * stride).map(|_| f()).collect(),
        stride,
    }
}

/// Runs `c` on the emulated AMX path as work units: `row_cuts` × `panel_cuts` pieces.
fn run_units<T: TileUnit>(
    job: &Job,
    m: usize,
    panels: usize,
    row_cuts: &[usize],
    panel_cuts: &[usize],
) {
    let edges = |cuts: &[usize], end: usize| {
        let mut e: Vec<usize> = std::iter::once(0)
            .chain(cuts.iter().copied().filter(|&c| c < end))
            .collect();
        e.push(end);
        e.dedup();
        e
    };
    let (re, pe) = (edges(row_cuts, m), edges(panel_cuts, panels));
    for rows in re.windows(2) {
        for ps in pe.windows(2) {
            // SAFETY: AVX-512 checked by the caller; units are disjoint and `out` covers M×N.
            unsafe { run_with::<T>(job, rows[0]..rows[1], ps[0]..ps[1]) };
        }
    }
}

fn check(
    m: usize,
    n: usize,
    k: usize,
    seed: u64,
    fill: Fill,
    row_cuts: &[usize],
    panel_cuts: &[usize],
) {
    let c = case(m, n, k, seed, fill);
    let panels = c.packed.panels();
    let reference = super::super::gemm_s32_reference(&c.a, &c.w, n);
    let mut s32 = vec![i32::MIN; m * n];
    let job = Job {
        a: &c.a,
        w: &c.packed,
        out: Out::I32(s32.as_mut_ptr()),
        out_stride: n,
        epilogue: Epilogue::default(),
    };
    run_units::<Emulated>(&job, m, panels, row_cuts, panel_cuts);
    assert!(
        s32 == reference,
        "s32 {m}×{n}×{k} seed {seed} {fill:?} cuts {row_cuts:?}/{panel_cuts:?}"
    );
    for (e, activation) in [Activation::None, Activation::Relu, Activation::Gelu]
        .into_iter()
        .enumerate()
    {
        let with = (seed as usize + e) % 4;
        let epilogue = Epilogue {
            bias: (with & 1 != 0).then_some(&c.bias[..]),
            activation,
            residual: (with & 2 != 0).then_some(&c.residual[..]),
        };
        let mut want = vec![f32::NAN; m * c.stride];
        let job = Job {
            a: &c.a,
            w: &c.packed,
            out: Out::F32(want.as_mut_ptr()),
            out_stride: c.stride,
            epilogue,
        };
        // SAFETY: the scalar path needs no CPU feature; `want` covers M×N at the stride.
        unsafe { super::super::scalar::run(&job, 0..m, 0..panels) };
        let mut got = vec![f32::NAN; m * c.stride];
        let job = Job {
            out: Out::F32(got.as_mut_ptr()),
            ..job
        };
        run_units::<Emulated>(&job, m, panels, row_cuts, panel_cuts);
        let same = got
            .iter()
            .zip(&want)
            .all(|(g, w)| g.to_bits() == w.to_bits());
        assert!(
            same,
            "f32 {activation:?} {m}×{n}×{k} seed {seed} cuts {row_cuts:?}/{panel_cuts:?}"
        );
    }
}

#[test]
fn tile_config_is_palette_1_with_sixteen_rows_of_64_bytes() {
    let c = &TILE_CONFIG.0;
    assert_eq!((c[0], c[1]), (1, 0));
    for t in 0..8 {
        assert_eq!(u16::from_le_bytes([c[16 + 2 * t], c[17 + 2 * t]]), 64);
        assert_eq!(c[48 + t], 16);
    }
    assert!(
        c[2..16]
            .iter()
            .chain(&c[32..48])
            .chain(&c[56..])
            .all(|&b| b == 0),
        "reserved bytes zero"
    );
}

#[test]
fn emulated_self_test_passes() {
    if avx512() {
        // SAFETY: AVX-512 VNNI checked; the emulator needs nothing else.
        assert_eq!(unsafe { self_test::<Emulated>() }, Ok(()));
    }
}

#[test]
fn emulated_amx_matches_the_references_on_ragged_shapes() {
    if !avx512() {
        return;
    }
    let mut seed = 1;
    for &m in &[1usize, 15, 16, 17, 31, 32, 33, 47, 48, 64, 70] {
        for &n in &[1usize, 16, 17, 47, 48, 49, 95, 96, 97, 150] {
            for &k in &[1usize, 4, 60, 64, 65, 127, 128, 200] {
                let fill = if seed % 5 == 0 {
                    Fill::Extreme
                } else {
                    Fill::Random
                };
                check(m, n, k, seed, fill, &[], &[]);
                seed += 1;
            }
        }
    }
}

#[test]
fn emulated_amx_k_blocks_units_and_extremes() {
    if !avx512() {
        return;
    }
    // K blocks (> 16 chunks) with and without a tail; units cut at odd rows and panels.
    for &(m, n, k) in &[
        (70, 150, 1100),
        (48, 97, 1088),
        (33, 49, 2100),
        (64, 300, 3072),
    ] {
        for fill in [Fill::Random, Fill::Extreme] {
            check(m, n, k, (m * n + k) as u64, fill, &[], &[]);
            check(m, n, k, 7, fill, &[5, 21, 40], &[1, 3, 4]);
        }
    }
}

#[test]
fn emulated_amx_sums_wrap_like_the_reference() {
    if !avx512() {
        return;
    }
    // |Σ| up to 127·128·K exceeds i32 for K > 132 k: sums and the compensation wrap.
    check(16, 16, 140_000, 3, Fill::Largest, &[], &[]);
}

#[test]
fn usable_is_decided_once() {
    let first = usable();
    assert_eq!(usable(), first);
    assert_eq!(first, super::check().is_ok());
    println!("AMX usable: {first} ({:?})", super::check());
}
