//! Timing of everything the AMX path does besides the tile instructions (scratch, block set-up,
//! the AVX-512 epilogue), with a tile unit that does nothing: the floor under the AMX path's
//! time on any CPU. `cargo test --release --lib amx_vector_side -- --ignored --nocapture`.

use std::time::Instant;

use super::*;
use crate::kernels::int8::{Activation, Epilogue};

struct NoTiles;

impl TileUnit for NoTiles {
    unsafe fn configure(_: &TileConfig) {}
    unsafe fn block(_: &Block) {}
    unsafe fn release() {}
}

#[test]
#[ignore = "timing, not a check"]
fn amx_vector_side_time() {
    if !Isa::Avx512Vnni.is_available() {
        return;
    }
    println!("vector side of the AMX path (tile unit = no-op) vs the whole VNNI path, 1 thread");
    for (n, k, activation) in [
        (768, 768, Activation::None),
        (3072, 768, Activation::Gelu),
        (768, 3072, Activation::None),
        (384, 384, Activation::None),
        (1536, 384, Activation::Gelu),
        (384, 1536, Activation::None),
    ] {
        for m in [32usize, 128, 256] {
            let x: Vec<f32> = (0..m * k)
                .map(|i| ((i * 7919) % 2001) as f32 / 1000.0 - 1.0)
                .collect();
            let mut a = QuantizedActivations::new();
            super::super::quantize_activations(Isa::Avx512Vnni, &x, m, k, &mut a);
            let w: Vec<i8> = (0..n * k).map(|i| (i * 31 % 255) as u8 as i8).collect();
            let packed = PackedI8Weights::pack(&w, n, k, &vec![1e-3; n]);
            let bias = vec![0.5f32; n];
            let mut out = vec![0f32; m * n];
            let epilogue = Epilogue {
                bias: Some(&bias),
                activation,
                residual: None,
            };
            let job = Job {
                a: &a,
                w: &packed,
                out: Out::F32(out.as_mut_ptr()),
                out_stride: n,
                epilogue,
            };
            let best = |f: &dyn Fn()| {
                (0..30)
                    .map(|_| {
                        let t = Instant::now();
                        f();
                        t.elapsed().as_secs_f64()
                    })
                    .fold(f64::INFINITY, f64::min)
            };
            // SAFETY: AVX-512 VNNI checked; one thread writes all of `out`.
            let side = best(&|| unsafe { run_with::<NoTiles>(&job, 0..m, 0..packed.panels()) });
            // SAFETY: as above.
            let vnni = best(&|| unsafe { avx512vnni::run(&job, 0..m, 0..packed.panels()) });
            let ops = 2.0 * (m * n * k) as f64;
            // kernels.md §2: the measured 2×2-tile AMX kernel, 3.3 TOPS per core at M = 32.
            let tiles = ops / 3.3e12;
            println!(
                "M={m:>4} N={n:>5} K={k:>5} {activation:?}: vector side {:>7.1} µs ({:>5.2} ns/output), \
                 VNNI {:>7.1} µs; with tiles at 3.3 TOPS ≥ {:>6.1} µs → ≤ {:.1}× VNNI",
                side * 1e6,
                side * 1e9 / (m * n) as f64,
                vnni * 1e6,
                (side + tiles) * 1e6,
                vnni / (side + tiles)
            );
        }
    }
}
