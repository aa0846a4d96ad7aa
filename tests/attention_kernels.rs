//! The attention kernels: every ISA path bit-identical to the scalar reference on ragged shapes
//! (one query and many, causal and not, head widths that are no multiple of a vector), the
//! reference within float rounding of an f64 softmax attention, and a batch of sequences equal
//! to each sequence alone.

use proptest::prelude::*;
use quantserve::kernels::attention::{
    Heads, Operand, TransposedKeys, attend, attend_batch, attend_transposed, reference,
};
use quantserve::kernels::cpu::Isa;

struct Case {
    lq: usize,
    lk: usize,
    heads: Heads,
    /// `[Q | K | V]` rows: Q in rows `0..lq`, K and V in rows `0..lk`, stride `3 · width`.
    qkv: Vec<f32>,
}

impl Case {
    fn new(lq: usize, lk: usize, count: usize, dim: usize, causal: bool, seed: u64) -> Self {
        let mut s = seed | 1;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 24) as f32 * 4.0 - 2.0
        };
        let width = count * dim;
        let rows = lq.max(lk);
        Self {
            lq,
            lk,
            heads: Heads { count, dim, causal },
            qkv: (0..rows * 3 * width).map(|_| next()).collect(),
        }
    }

    fn width(&self) -> usize {
        self.heads.count * self.heads.dim
    }

    fn operand(&self, rows: usize, which: usize) -> Operand<'_> {
        Operand {
            data: &self.qkv,
            first_row: 0,
            rows,
            stride: 3 * self.width(),
            col: which * self.width(),
        }
    }

    fn ops(&self) -> (Operand<'_>, Operand<'_>, Operand<'_>) {
        (
            self.operand(self.lq, 0),
            self.operand(self.lk, 1),
            self.operand(self.lk, 2),
        )
    }

    fn run(&self, isa: Option<Isa>) -> Vec<f32> {
        let (q, k, v) = self.ops();
        let mut out = vec![f32::NAN; self.lq * self.width()];
        match isa {
            Some(isa) => attend(isa, q, k, v, self.heads, &mut out, self.width()),
            None => reference(q, k, v, self.heads, &mut out, self.width()),
        }
        out
    }

    /// softmax(Q Kᵀ / √d) V per head in f64, with the causal mask.
    fn exact(&self) -> Vec<f64> {
        let (w, d) = (self.width(), self.heads.dim);
        let at = |row: usize, col: usize| self.qkv[row * 3 * w + col] as f64;
        let mut out = vec![0.0; self.lq * w];
        for h in 0..self.heads.count {
            for i in 0..self.lq {
                let visible = if self.heads.causal {
                    (i + 1 + self.lk).saturating_sub(self.lq).min(self.lk)
                } else {
                    self.lk
                };
                let s: Vec<f64> = (0..visible)
                    .map(|j| {
                        (0..d)
                            .map(|c| at(i, h * d + c) * at(j, w + h * d + c))
                            .sum::<f64>()
                            / (d as f64).sqrt()
                    })
                    .collect();
                let max = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = s.iter().map(|x| (x - max).exp()).collect();
                let sum: f64 = e.iter().sum();
                for c in 0..d {
                    out[i * w + h * d + c] = (0..visible)
                        .map(|j| e[j] / sum * at(j, 2 * w + h * d + c))
                        .sum();
                }
            }
        }
        out
    }
}

fn first_difference(got: &[f32], want: &[f32]) -> Option<(usize, f32, f32)> {
    got.iter()
        .zip(want)
        .position(|(a, b)| a.to_bits() != b.to_bits())
        .map(|i| (i, got[i], want[i]))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn every_path_equals_the_reference_and_the_reference_the_exact_math(
        lq in prop_oneof![Just(1usize), 1usize..40],
        lk in prop_oneof![Just(1usize), Just(16), Just(17), 1usize..80],
        count in 1usize..4,
        dim in prop_oneof![Just(32usize), Just(64), 1usize..80],
        causal in any::<bool>(),
        seed in any::<u64>(),
    ) {
        // Causal attention over a cache: at least as many keys as queries.
        let lk = if causal { lk.max(lq) } else { lk };
        let case = Case::new(lq, lk, count, dim, causal, seed);
        let want = case.run(None);
        let exact = case.exact();
        for (i, (&g, &e)) in want.iter().zip(&exact).enumerate() {
            prop_assert!((g as f64 - e).abs() <= 2e-5 * e.abs().max(1.0), "element {i}: {g} vs {e}");
        }
        for isa in Isa::available() {
            prop_assert_eq!(first_difference(&case.run(Some(isa)), &want), None, "on {}", isa);
        }
    }
}

/// Keys transposed once (a decoder's cross-attention): every path equals the scalar one, several
/// queries give what `attend` gives, and one query stays within rounding of the exact math.
#[test]
fn transposed_keys_agree_with_every_path_and_the_exact_math() {
    for (lq, lk, dim, seed) in [
        (1, 1, 32, 1),
        (1, 37, 32, 2),
        (1, 70, 17, 3),
        // One query over more keys and columns than one pass of the single-row kernels holds.
        (1, 100, 64, 5),
        (1, 48, 40, 6),
        (5, 40, 64, 4),
    ] {
        let case = Case::new(lq, lk, 3, dim, false, seed);
        let (q, k, v) = case.ops();
        let kt = TransposedKeys::new(k, case.heads);
        let run = |isa| {
            let mut out = vec![f32::NAN; lq * case.width()];
            attend_transposed(isa, q, k, &kt, v, case.heads, &mut out, case.width());
            out
        };
        let scalar = run(Isa::Scalar);
        for (i, (&g, &e)) in scalar.iter().zip(&case.exact()).enumerate() {
            assert!(
                (g as f64 - e).abs() <= 2e-5 * e.abs().max(1.0),
                "element {i}: {g} vs {e}"
            );
        }
        for isa in Isa::available() {
            assert_eq!(
                first_difference(&run(isa), &scalar),
                None,
                "{lq}×{lk} on {isa}"
            );
            if lq > 1 {
                assert_eq!(
                    first_difference(&run(isa), &case.run(Some(isa))),
                    None,
                    "on {isa}"
                );
            }
        }
    }
}

#[test]
fn a_batch_equals_each_sequence_alone() {
    let (count, dim) = (3, 40);
    let cases: Vec<Case> = [5usize, 1, 33, 16]
        .iter()
        .enumerate()
        .map(|(i, &n)| Case::new(n, n, count, dim, false, 7 + i as u64))
        .collect();
    let width = count * dim;
    let total: usize = cases.iter().map(|c| c.lq).sum();
    for isa in Isa::available() {
        let mut out = vec![f32::NAN; total * width];
        let mut row = 0;
        let seqs: Vec<_> = cases
            .iter()
            .map(|c| {
                let (q, k, v) = c.ops();
                let s = (q, k, v, row);
                row += c.lq;
                s
            })
            .collect();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        pool.install(|| attend_batch(isa, &seqs, cases[0].heads, &mut out, width));
        let mut row = 0;
        for c in &cases {
            let alone = c.run(Some(isa));
            assert_eq!(
                first_difference(&out[row * width..(row + c.lq) * width], &alone),
                None,
                "on {isa}"
            );
            row += c.lq;
        }
    }
}
