//! The attention kernels with f32 and with bf16 matmuls (`kernels::attention::bf16`), side by
//! side in one run: the encoder shapes of MiniLM (the sentiment model), BERT-base and the
//! Bergamot tiny students, one thread, on the best path of this CPU and on AVX2 (where bf16 pairs
//! are two FMAs each). Best-of time per call of `attend_batch` over all the batch's sequences.
//!
//! `cargo bench --bench attention`

use std::hint::black_box;
use std::time::{Duration, Instant};

use quantserve::kernels::attention::{Heads, Operand, Precision, attend_batch};
use quantserve::kernels::cpu::Isa;

struct Shape {
    model: &'static str,
    seqs: usize,
    tokens: usize,
    heads: usize,
    dim: usize,
}

/// Best-of time of `call` over `budget` (at least 3 runs).
fn best_seconds(mut call: impl FnMut(), budget: Duration) -> f64 {
    call();
    let start = Instant::now();
    let mut best = f64::INFINITY;
    let mut runs = 0;
    while runs < 3 || start.elapsed() < budget {
        let t = Instant::now();
        call();
        best = best.min(t.elapsed().as_secs_f64());
        runs += 1;
    }
    best
}

fn main() {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("rayon pool");
    let shapes = [
        Shape {
            model: "minilm",
            seqs: 32,
            tokens: 64,
            heads: 12,
            dim: 32,
        },
        Shape {
            model: "minilm",
            seqs: 8,
            tokens: 64,
            heads: 12,
            dim: 32,
        },
        Shape {
            model: "bert-base",
            seqs: 8,
            tokens: 128,
            heads: 12,
            dim: 64,
        },
        Shape {
            model: "marian-tiny",
            seqs: 32,
            tokens: 32,
            heads: 8,
            dim: 32,
        },
    ];
    decoder_step(&pool);
    let mut isas = vec![Isa::best_available()];
    if Isa::Avx2.is_available() && isas[0] != Isa::Avx2 {
        isas.push(Isa::Avx2);
    }
    println!("attention, f32 vs bf16 matmuls, 1 thread (best-of ms per batch)");
    println!(
        "{:<12} {:>5} {:>6} {:>6} {:>11} | {:>9} {:>9} | {:>6}",
        "model", "seqs", "tokens", "heads", "path", "f32 ms", "bf16 ms", "×"
    );
    for shape in &shapes {
        let width = shape.heads * shape.dim;
        let rows = shape.seqs * shape.tokens;
        let mut s = 0x9e37_79b9_7f4a_7c15u64;
        let qkv: Vec<f32> = (0..rows * 3 * width)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 2.0
            })
            .collect();
        let view = |seq: usize, col: usize| Operand {
            data: &qkv,
            first_row: seq * shape.tokens,
            rows: shape.tokens,
            stride: 3 * width,
            col,
        };
        let seqs: Vec<_> = (0..shape.seqs)
            .map(|q| {
                (
                    view(q, 0),
                    view(q, width),
                    view(q, 2 * width),
                    q * shape.tokens,
                )
            })
            .collect();
        let mut out = vec![0.0f32; rows * width];
        for &isa in &isas {
            let mut time = |precision| {
                let heads = Heads {
                    count: shape.heads,
                    dim: shape.dim,
                    causal: false,
                    precision,
                };
                pool.install(|| {
                    best_seconds(
                        || attend_batch(isa, black_box(&seqs), heads, &mut out, width),
                        Duration::from_millis(700),
                    )
                })
            };
            let (f32_s, bf16_s) = (time(Precision::F32), time(Precision::Bf16));
            println!(
                "{:<12} {:>5} {:>6} {:>6} {:>11} | {:>9.3} {:>9.3} | {:>6.2}",
                shape.model,
                shape.seqs,
                shape.tokens,
                shape.heads,
                isa.to_string(),
                f32_s * 1e3,
                bf16_s * 1e3,
                f32_s / bf16_s
            );
        }
    }
}

/// One decoder step of the Opus-MT shape (8 heads × 64, 32 source tokens), one query per row,
/// batch 32: cross-attention over keys transposed beforehand and self-attention over a
/// 16-position cache, as `models::marian::decoder` calls them. Prints ns per (row, head).
fn decoder_step(pool: &rayon::ThreadPool) {
    use quantserve::kernels::attention::{TransposedKeys, attend, attend_transposed};
    let (heads, dim, src, cache, rows) = (8usize, 64usize, 32usize, 16usize, 32usize);
    let width = heads * dim;
    let mut s = 0x2545_f491_4f6c_dd1du64;
    let mut random = |n: usize| -> Vec<f32> {
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 2.0
            })
            .collect()
    };
    let q = random(rows * width);
    let kv: Vec<Vec<f32>> = (0..rows).map(|_| random(src * 2 * width)).collect();
    let caches: Vec<Vec<f32>> = (0..rows).map(|_| random(cache * 2 * width)).collect();
    let spec = Heads {
        count: heads,
        dim,
        causal: false,
        precision: Precision::F32,
    };
    fn operand(data: &[f32], rows: usize, col: usize, stride: usize) -> Operand<'_> {
        Operand {
            data,
            first_row: 0,
            rows,
            stride,
            col,
        }
    }
    let kts: Vec<TransposedKeys> = kv
        .iter()
        .map(|m| {
            let (k, v) = (
                operand(m, src, 0, 2 * width),
                operand(m, src, width, 2 * width),
            );
            TransposedKeys::with_values(k, v, spec)
        })
        .collect();
    let mut out = vec![0.0f32; rows * width];
    let isa = Isa::best_available();
    let query = |r: usize| Operand {
        data: &q,
        first_row: r,
        rows: 1,
        stride: width,
        col: 0,
    };
    let cross = pool.install(|| {
        best_seconds(
            || {
                for r in 0..rows {
                    let o = &mut out[r * width..(r + 1) * width];
                    let (k, v) = (
                        operand(&kv[r], src, 0, 2 * width),
                        operand(&kv[r], src, width, 2 * width),
                    );
                    attend_transposed(isa, query(r), k, &kts[r], v, spec, o, width);
                }
            },
            Duration::from_millis(700),
        )
    });
    let own = pool.install(|| {
        best_seconds(
            || {
                for r in 0..rows {
                    let o = &mut out[r * width..(r + 1) * width];
                    let (k, v) = (
                        operand(&caches[r], cache, 0, 2 * width),
                        operand(&caches[r], cache, width, 2 * width),
                    );
                    attend(isa, query(r), k, v, spec, o, width);
                }
            },
            Duration::from_millis(700),
        )
    });
    let per = |t: f64| t * 1e9 / (rows * heads) as f64;
    println!(
        "decoder step ({isa}, {rows} rows × {heads} heads × {dim}): cross-attention over {src} keys {:.0} ns per head, self-attention over {cache} {:.0} ns per head",
        per(cross),
        per(own)
    );
}
