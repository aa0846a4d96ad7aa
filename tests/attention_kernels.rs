//! The attention kernels: every ISA path bit-identical to the scalar reference on ragged shapes
//! (one query and many, causal and not, head widths that are no multiple of a vector), the
//! reference within float rounding of an f64 softmax attention, and a batch of sequences equal
//! to each sequence alone; the bf16 matmuls likewise on every path, within the bound their
//! roundings imply.

use proptest::prelude::*;
use quantserve::kernels::attention::{
    Heads, Operand, Precision, TransposedKeys, attend, attend_batch, attend_transposed, bf16,
    force_bf16_emulation, reference,
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
            heads: Heads {
                count,
                dim,
                causal,
                precision: Precision::F32,
            },
            qkv: (0..rows * 3 * width).map(|_| next()).collect(),
        }
    }

    /// The same case with the matmuls in bf16.
    fn bf16(mut self) -> Self {
        self.heads.precision = Precision::Bf16;
        self
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
        self.exact_and_bound().0
    }

    /// [`Case::exact`], and per element the bound on |bf16 attention − exact| that the roundings
    /// imply. With u = 2^-9 (bf16's unit roundoff) and S_ij = Σ_c |q_ic|·|k_jc|:
    /// * a score is off by at most δ_ij = scale·S_ij·(2u + u² + (d + 2)·2^-24·(1 + u)²) (q and
    ///   k rounded, then an f32 sum of d products);
    /// * so each probability by a factor within e^{±2δ_i} (δ_i the row's largest δ_ij), plus the
    ///   f32 softmax's own rounding (ε = 2e-6 relative, an f32 exp and sum);
    /// * p and v are rounded (u each) and summed in f32 (lk products):
    ///   |out_ic − exact_ic| ≤ Σ_j p_ij·|v_jc|·((1 + η_i)(1 + u)² − 1 + (lk + 2)·2^-24) with
    ///   η_i = e^{2δ_i} − 1 + ε, plus 1e-7 for what the flush below 2^-50 drops.
    fn exact_and_bound(&self) -> (Vec<f64>, Vec<f64>) {
        let (w, d) = (self.width(), self.heads.dim);
        let at = |row: usize, col: usize| self.qkv[row * 3 * w + col] as f64;
        let mut out = vec![0.0; self.lq * w];
        let mut bound = vec![0.0; self.lq * w];
        let u = 2f64.powi(-9);
        let f32_unit = 2f64.powi(-24);
        let scale = 1.0 / (d as f64).sqrt();
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
                let delta = (0..visible)
                    .map(|j| {
                        let s: f64 = (0..d)
                            .map(|c| (at(i, h * d + c) * at(j, w + h * d + c)).abs())
                            .sum();
                        scale
                            * s
                            * (2.0 * u + u * u + (d + 2) as f64 * f32_unit * (1.0 + u).powi(2))
                    })
                    .fold(0.0, f64::max);
                let eta = (2.0 * delta).exp() - 1.0 + 2e-6;
                let factor =
                    (1.0 + eta) * (1.0 + u).powi(2) - 1.0 + (visible + 2) as f64 * f32_unit;
                for c in 0..d {
                    let at_out = i * w + h * d + c;
                    out[at_out] = (0..visible)
                        .map(|j| e[j] / sum * at(j, 2 * w + h * d + c))
                        .sum();
                    let weighted: f64 = (0..visible)
                        .map(|j| e[j] / sum * at(j, 2 * w + h * d + c).abs())
                        .sum();
                    bound[at_out] = weighted * factor + 1e-7;
                }
            }
        }
        (out, bound)
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

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    /// A decoder step (one query): every head at once on AVX-512, over a cache of key rows and
    /// over transposed keys with and without their head-major values, gives the scalar path's
    /// bits, for head counts that fill the kernel's groups of 4 and leave a remainder.
    #[test]
    fn one_query_over_every_head_equals_the_scalar_path(
        lk in prop_oneof![Just(1usize), Just(16), Just(32), 1usize..90],
        count in 1usize..11,
        dim in prop_oneof![Just(32usize), Just(64), 1usize..80],
        seed in any::<u64>(),
    ) {
        let case = Case::new(1, lk, count, dim, true, seed);
        let (q, k, v) = case.ops();
        let want = case.run(Some(Isa::Scalar));
        let plain = TransposedKeys::new(k, case.heads);
        let with_values = TransposedKeys::with_values(k, v, case.heads);
        let transposed = |isa, kt| {
            let mut out = vec![f32::NAN; case.width()];
            attend_transposed(isa, q, k, kt, v, case.heads, &mut out, case.width());
            out
        };
        // Transposed keys sum each score over c in order, rows in 16 partial sums: two results.
        let want_transposed = transposed(Isa::Scalar, &plain);
        for isa in Isa::available() {
            prop_assert_eq!(first_difference(&case.run(Some(isa)), &want), None, "rows on {}", isa);
            for (kt, what) in [(&plain, "transposed"), (&with_values, "transposed + values")] {
                let got = transposed(isa, kt);
                prop_assert_eq!(first_difference(&got, &want_transposed), None, "{} on {}", what, isa);
            }
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

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    /// bf16 matmuls: every path (AVX-512 with `vdpbf16ps` where the CPU has it, and with the
    /// two-FMA emulation; AVX2; scalar) gives the scalar reference's bits, and every output is
    /// within the bound the roundings imply (`Case::exact_and_bound`).
    #[test]
    fn bf16_paths_equal_the_reference_within_the_rounding_bound(
        lq in 2usize..40,
        lk in prop_oneof![Just(1usize), Just(16), Just(17), 1usize..80],
        count in 1usize..4,
        dim in prop_oneof![Just(32usize), Just(64), 1usize..80],
        causal in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let lk = if causal { lk.max(lq) } else { lk };
        let case = Case::new(lq, lk, count, dim, causal, seed).bf16();
        let want = case.run(None);
        let (exact, bound) = case.exact_and_bound();
        for (i, ((&g, &e), &b)) in want.iter().zip(&exact).zip(&bound).enumerate() {
            prop_assert!((g as f64 - e).abs() <= b, "element {i}: {g} vs {e}, bound {b}");
        }
        let f32_out = Case::new(lq, lk, count, dim, causal, seed).run(None);
        prop_assert!(first_difference(&want, &f32_out).is_some() || want.iter().all(|x| *x == 0.0),
            "bf16 gave the f32 path's bits: it did not run");
        for emulate in [false, true] {
            force_bf16_emulation(emulate);
            for isa in Isa::available() {
                prop_assert_eq!(first_difference(&case.run(Some(isa)), &want), None, "on {} (emulated: {})", isa, emulate);
            }
        }
        force_bf16_emulation(false);
    }

    /// Rounding to bf16: nearest even as the `half` crate rounds, zero below 2^-50, and every
    /// vector path's rows of pairs and interleaved rows equal the scalar rounding (rows of 7 and
    /// of 33 floats: the vector steps and their tails).
    #[test]
    fn bf16_rounding_is_nearest_even_on_every_path(
        bits in proptest::collection::vec(any::<u32>(), 1..200),
        small in proptest::collection::vec(-60i32..-40, 1..70),
    ) {
        let mut xs: Vec<f32> = bits.iter().map(|&b| f32::from_bits(b)).filter(|x| !x.is_nan()).collect();
        xs.extend(small.iter().map(|&e| 1.5f32 * 2f32.powi(e)));
        for &x in &xs {
            let want = if x.abs() < bf16::FLUSH_BELOW {
                (x.to_bits() >> 16) as u16 & 0x8000
            } else {
                half::bf16::from_f32(x).to_bits()
            };
            prop_assert_eq!(bf16::round(x), want, "{:e}", x);
        }
        let pair = |lo: u16, hi: u16| u32::from(lo) | u32::from(hi) << 16;
        let want_pairs: Vec<u32> = xs
            .chunks(2)
            .map(|two| pair(bf16::round(two[0]), two.get(1).map_or(0, |&x| bf16::round(x))))
            .collect();
        for (isa, emulate) in Isa::available().into_iter().flat_map(|isa| [(isa, false), (isa, true)]) {
            force_bf16_emulation(emulate);
            let mut pairs = vec![0; xs.len().div_ceil(2)];
            bf16::round_rows(isa, bf16::Rows { data: &xs, stride: xs.len(), rows: 1, len: xs.len() }, &mut pairs, 0);
            prop_assert_eq!(&pairs, &want_pairs, "on {}", isa);
            // Both lists as rows of 7 (the last row shorter is left out): pairs row by row, and
            // rows interleaved two by two.
            let rows = xs.len() / 7;
            let src = bf16::Rows { data: &xs, stride: 7, rows, len: 7 };
            let mut by_row = vec![0; rows * 5];
            bf16::round_rows(isa, src, &mut by_row, 5);
            for r in 0..rows {
                for i in 0..4 {
                    let hi = if 2 * i + 1 < 7 { bf16::round(xs[7 * r + 2 * i + 1]) } else { 0 };
                    prop_assert_eq!(by_row[5 * r + i], pair(bf16::round(xs[7 * r + 2 * i]), hi), "on {}", isa);
                }
            }
            let mut inter = vec![0; rows.div_ceil(2) * 7];
            bf16::interleave_rows(isa, src, &mut inter);
            for j2 in 0..rows.div_ceil(2) {
                for c in 0..7 {
                    let hi = if 2 * j2 + 1 < rows { bf16::round(xs[7 * (2 * j2 + 1) + c]) } else { 0 };
                    prop_assert_eq!(inter[7 * j2 + c], pair(bf16::round(xs[7 * 2 * j2 + c]), hi), "on {}", isa);
                }
            }
            let wide = bf16::Rows { data: &xs, stride: 33, rows: xs.len() / 33, len: 33 };
            let mut wide_pairs = vec![0; wide.rows * 17];
            bf16::round_rows(isa, wide, &mut wide_pairs, 17);
            for r in 0..wide.rows {
                let row = &xs[33 * r..33 * r + 33];
                let want: Vec<u32> = row.chunks(2).map(|two| pair(bf16::round(two[0]), two.get(1).map_or(0, |&x| bf16::round(x)))).collect();
                prop_assert_eq!(&wide_pairs[17 * r..17 * r + 17], &want[..], "on {}", isa);
            }
        }
        force_bf16_emulation(false);
    }
}
