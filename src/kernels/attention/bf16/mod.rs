//! Attention's two matmuls in bfloat16 for several queries (an encoder's self-attention):
//! Q, K, P and V rounded to bf16, products summed in f32 lanes, two pair elements per step, as
//! AVX512_BF16's `vdpbf16ps` does. The scores' scale, the softmax and the outputs stay f32.
//!
//! Why the bits are the same on every path: `vdpbf16ps` computes per f32 lane
//! `acc = fma(a_even, b_even, fma(a_odd, b_odd, acc))` (the odd element of each pair first: 3.2 M
//! random lanes on Zen 4 matched this and not the other order) and flushes subnormal inputs and
//! results to zero. [`round`] flushes every magnitude below 2^-50 to zero, so every nonzero bf16
//! here is a multiple of 2^-57, every product a multiple of 2^-114, and so is every f32 sum of
//! them (rounding only coarsens the grid): none is subnormal, the flushes never fire, and two
//! plain FMAs per pair (AVX-512 without BF16, AVX2, scalar) give exactly the hardware's result.
//!
//! Accuracy: each rounding to bf16 is within 2^-9 relative; `tests/attention_kernels.rs` checks
//! every output against the bound this implies (`Case::exact_and_bound` there derives it).
//!
//! Layouts (pairs as `u32`, the even element in the low half):
//! * query row r: `q[r * pairs + c2] = (q[2c2], q[2c2 + 1])`, `pairs = ⌈d / 2⌉`;
//! * keys: `kp[c2 * keys + j] = (k[j][2c2], k[j][2c2 + 1])`, 16 keys per vector as in the f32 Kᵀ;
//! * probabilities of row r: `p[r * key_pairs + j2] = (p[2j2], p[2j2 + 1])`;
//! * values: `vp[j2 * d + c] = (v[2j2][c], v[2j2 + 1][c])`, 16 columns per vector.

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;

use super::{HeadJob, Operand, ROWS, SUM_LANES, scalar};
use crate::kernels::cpu::Isa;

/// Magnitudes below this (2^-50) round to zero: see the module comment.
pub const FLUSH_BELOW: f32 = 8.881_784e-16;

/// `x` rounded to bf16 bits, to nearest even; NaN stays a (quiet) NaN; below [`FLUSH_BELOW`]
/// in magnitude a zero of `x`'s sign.
#[inline]
pub fn round(x: f32) -> u16 {
    let b = x.to_bits();
    if x.is_nan() {
        ((b >> 16) | 0x40) as u16
    } else if x.abs() < FLUSH_BELOW {
        ((b >> 16) & 0x8000) as u16
    } else {
        ((b + 0x7fff + ((b >> 16) & 1)) >> 16) as u16
    }
}

/// One `vdpbf16ps` lane: `acc + a_odd · b_odd`, then `+ a_even · b_even`, each one FMA.
#[inline]
pub(crate) fn dot_pair(acc: f32, a: u32, b: u32) -> f32 {
    let (a_odd, b_odd) = (
        f32::from_bits(a & 0xffff_0000),
        f32::from_bits(b & 0xffff_0000),
    );
    let (a_even, b_even) = (f32::from_bits(a << 16), f32::from_bits(b << 16));
    a_even.mul_add(b_even, a_odd.mul_add(b_odd, acc))
}

/// Per-thread buffers of the bf16 path.
#[derive(Default)]
pub(crate) struct Bf16Scratch {
    /// The keys' rows as pairs, before the transposition into `kp`.
    rows: Vec<u32>,
    kp: Vec<u32>,
    vp: Vec<u32>,
    /// A block's query rows and probability rows as pairs.
    q: Vec<u32>,
    p: Vec<u32>,
}

/// `rows` rows of `len` floats, the first at `data[0]`, `stride` floats apart.
#[derive(Clone, Copy)]
pub struct Rows<'a> {
    pub data: &'a [f32],
    pub stride: usize,
    pub rows: usize,
    pub len: usize,
}

impl<'a> Rows<'a> {
    /// Row `r`. Panics if `data` is too short for it.
    #[inline]
    pub(crate) fn row(&self, r: usize) -> &'a [f32] {
        &self.data[r * self.stride..r * self.stride + self.len]
    }

    /// Columns `off..off + d` of the operand's rows `r0..r0 + rows`.
    fn of(o: &Operand<'a>, r0: usize, rows: usize, off: usize, d: usize) -> Self {
        let start = ((o.first_row + r0) * o.stride + o.col + off).min(o.data.len());
        Rows {
            data: &o.data[start..],
            stride: o.stride,
            rows,
            len: d,
        }
    }

    /// Panics unless every row lies inside `data`.
    fn check(&self) {
        if self.rows > 0 {
            assert!((self.rows - 1) * self.stride + self.len <= self.data.len());
        }
    }
}

/// Each row `r` of `src` as pairs: `dst[r · dst_stride + i] = (round(x[2i]), round(x[2i + 1]))`,
/// a 0 after an odd-length row; on the vector path of `isa`. Panics if `dst` or `src.data` is
/// too short, or if the CPU lacks `isa`.
pub fn round_rows(isa: Isa, src: Rows, dst: &mut [u32], dst_stride: usize) {
    if let Err(e) = isa.ensure_available() {
        panic!("{e}");
    }
    // SAFETY: the CPU supports `isa` (checked above); lengths checked in `round_rows_on`.
    unsafe { round_rows_on(isa, src, dst, dst_stride) }
}

/// Rows 2j2 and 2j2 + 1 of `src` interleaved: `dst[j2 · len + c] = (round(x[2j2][c]),
/// round(x[2j2 + 1][c]))`, an odd count's last row paired with 0; on the vector path of `isa`.
/// Panics if `dst` or `src.data` is too short, or if the CPU lacks `isa`.
pub fn interleave_rows(isa: Isa, src: Rows, dst: &mut [u32]) {
    if let Err(e) = isa.ensure_available() {
        panic!("{e}");
    }
    // SAFETY: the CPU supports `isa` (checked above); lengths checked in `interleave_rows_on`.
    unsafe { interleave_rows_on(isa, src, dst) }
}

/// The scalar pairs of `src[from..]` into `dst[from / 2..]` (`from` even): the tail of every
/// vector path.
pub(crate) fn round_pairs_tail(src: &[f32], dst: &mut [u32], from: usize) {
    for (i, d) in dst.iter_mut().enumerate().skip(from / 2) {
        let hi = src.get(2 * i + 1).map_or(0, |&x| round(x));
        *d = pair(round(src[2 * i]), hi);
    }
}

/// The scalar interleaving of `a` and `b` (absent: 0) from column `from` on: the tail of every
/// vector path.
pub(crate) fn round_interleave_tail(a: &[f32], b: Option<&[f32]>, dst: &mut [u32], from: usize) {
    for (c, d) in dst.iter_mut().enumerate().skip(from) {
        *d = pair(round(a[c]), b.map_or(0, |b| round(b[c])));
    }
}

/// # Safety
/// The CPU supports `isa`.
unsafe fn round_rows_on(isa: Isa, src: Rows, dst: &mut [u32], dst_stride: usize) {
    src.check();
    if src.rows == 0 {
        return;
    }
    let pairs = src.len.div_ceil(2);
    assert!(pairs <= dst_stride || src.rows == 1);
    assert!((src.rows - 1) * dst_stride + pairs <= dst.len());
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: forwarded; the lengths as asserted.
        Isa::Amx | Isa::Avx512Vnni => unsafe { avx512::round_rows(src, dst, dst_stride) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: forwarded; the lengths as asserted.
        Isa::AvxVnni | Isa::Avx2 => unsafe { avx2::round_rows(src, dst, dst_stride) },
        _ => {
            for r in 0..src.rows {
                round_pairs_tail(
                    src.row(r),
                    &mut dst[r * dst_stride..r * dst_stride + pairs],
                    0,
                );
            }
        }
    }
}

/// # Safety
/// The CPU supports `isa`.
unsafe fn interleave_rows_on(isa: Isa, src: Rows, dst: &mut [u32]) {
    src.check();
    assert!(src.rows.div_ceil(2) * src.len <= dst.len());
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: forwarded; the lengths as asserted.
        Isa::Amx | Isa::Avx512Vnni => unsafe { avx512::interleave_rows(src, dst) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: forwarded; the lengths as asserted.
        Isa::AvxVnni | Isa::Avx2 => unsafe { avx2::interleave_rows(src, dst) },
        _ => {
            for j2 in 0..src.rows.div_ceil(2) {
                let b = (2 * j2 + 1 < src.rows).then(|| src.row(2 * j2 + 1));
                let out = &mut dst[j2 * src.len..(j2 + 1) * src.len];
                round_interleave_tail(src.row(2 * j2), b, out, 0);
            }
        }
    }
}

/// Two bf16 as a pair, `lo` the even element.
#[inline]
pub(crate) fn pair(lo: u16, hi: u16) -> u32 {
    u32::from(lo) | u32::from(hi) << 16
}

/// One head, bf16 matmuls: packs K and V, then per block of [`ROWS`] queries the scores, the
/// softmax (f32) and `P V`.
///
/// # Safety
/// As `super::head`: the CPU supports `isa`, `job.out` is valid for the job's elements and
/// exclusive to it.
pub(super) unsafe fn head(
    isa: Isa,
    job: &HeadJob,
    scratch: &mut Bf16Scratch,
    scores: &mut Vec<f32>,
) {
    let (lk, d, lq) = (job.k.rows, job.dim, job.q.rows);
    let keys = lk.next_multiple_of(SUM_LANES);
    let (pairs, key_pairs) = (d.div_ceil(2), lk.div_ceil(2));
    let Bf16Scratch { rows, kp, vp, q, p } = scratch;

    // Keys: each row as pairs, then transposed 8 keys at a time (each write 8 consecutive pairs
    // of one line; one key at a time scattered them `keys` apart). Padding keys stay 0.
    rows.clear();
    rows.resize(lk * pairs, 0);
    // SAFETY: forwarded.
    unsafe { round_rows_on(isa, Rows::of(&job.k, 0, lk, job.off, d), rows, pairs) };
    kp.clear();
    kp.resize(pairs * keys, 0);
    let mut j = 0;
    while j < lk {
        let n = (lk - j).min(8);
        for c2 in 0..pairs {
            for (t, x) in kp[c2 * keys + j..c2 * keys + j + n].iter_mut().enumerate() {
                *x = rows[(j + t) * pairs + c2];
            }
        }
        j += n;
    }

    // Values: rows 2j2 and 2j2 + 1 interleaved (an odd count's last row with zeros).
    vp.clear();
    vp.resize(key_pairs * d, 0);
    // SAFETY: forwarded.
    unsafe { interleave_rows_on(isa, Rows::of(&job.v, 0, lk, job.off, d), vp) };

    scores.clear();
    scores.resize(ROWS * keys, 0.0);
    q.clear();
    q.resize(ROWS * pairs, 0);
    p.clear();
    p.resize(ROWS * key_pairs, 0);
    let mut i0 = 0;
    while i0 < lq {
        let rows_now = (lq - i0).min(ROWS);
        let src = Rows::of(&job.q, i0, rows_now, job.off, d);
        // SAFETY: forwarded.
        unsafe { round_rows_on(isa, src, q, pairs) };
        let block = PairBlock {
            rows: rows_now,
            pairs,
            keys,
            key_pairs,
            dim: d,
            scale: job.scale,
        };
        // SAFETY: forwarded; the buffers have the lengths `PairBlock` describes.
        unsafe { scores_on(isa, &block, q, kp, scores) };
        for r in 0..rows_now {
            let row = &mut scores[r * keys..(r + 1) * keys];
            let visible = super::visible_keys(i0 + r, lq, lk, job.causal);
            // SAFETY: forwarded.
            unsafe { softmax_on(isa, row, visible) };
        }
        // The probabilities from `lk` on are 0 (softmax), so an odd count's last pair holds
        // the last key's and a 0.
        let src = Rows {
            data: scores,
            stride: keys,
            rows: rows_now,
            len: 2 * key_pairs,
        };
        // SAFETY: forwarded.
        unsafe { round_rows_on(isa, src, p, key_pairs) };
        let out: [*mut f32; ROWS] =
            std::array::from_fn(|r| job.out.0.wrapping_add((i0 + r) * job.out_stride));
        // SAFETY: forwarded; the block's output rows, the head's d columns each.
        unsafe { values_on(isa, &block, p, vp, &out[..rows_now]) };
        i0 += rows_now;
    }
}

/// The shape of a block of query rows on the bf16 path.
pub(crate) struct PairBlock {
    pub(crate) rows: usize,
    /// Query/key pairs per row (`⌈d / 2⌉`).
    pub(crate) pairs: usize,
    /// Keys padded to a multiple of 16: the row length of `kp` and the scores.
    pub(crate) keys: usize,
    /// Probability/value pairs (`⌈lk / 2⌉`).
    pub(crate) key_pairs: usize,
    pub(crate) dim: usize,
    pub(crate) scale: f32,
}

/// # Safety
/// The CPU supports `isa`; `q` holds `rows · pairs`, `kp` `pairs · keys`, `scores` `rows · keys`.
unsafe fn scores_on(isa: Isa, b: &PairBlock, q: &[u32], kp: &[u32], scores: &mut [f32]) {
    assert!(q.len() >= b.rows * b.pairs && kp.len() >= b.pairs * b.keys);
    assert!(scores.len() >= b.rows * b.keys);
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: forwarded.
        Isa::Amx | Isa::Avx512Vnni => unsafe { avx512::scores_pairs(b, q, kp, scores) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: forwarded.
        Isa::AvxVnni | Isa::Avx2 => unsafe { avx2::scores_pairs(b, q, kp, scores) },
        _ => scores_pairs(b, q, kp, scores),
    }
}

/// # Safety
/// The CPU supports `isa`.
unsafe fn softmax_on(isa: Isa, row: &mut [f32], visible: usize) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: forwarded.
        Isa::Amx | Isa::Avx512Vnni => unsafe { super::avx512::softmax(row, visible) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: forwarded.
        Isa::AvxVnni | Isa::Avx2 => unsafe { super::avx2::softmax(row, visible) },
        _ => scalar::softmax(row, visible),
    }
}

/// # Safety
/// The CPU supports `isa`; `p` holds `rows · key_pairs`, `vp` `key_pairs · dim`; each `out`
/// pointer is valid for `dim` writes and exclusive to this call.
unsafe fn values_on(isa: Isa, b: &PairBlock, p: &[u32], vp: &[u32], out: &[*mut f32]) {
    assert!(p.len() >= b.rows * b.key_pairs && vp.len() >= b.key_pairs * b.dim);
    assert_eq!(out.len(), b.rows);
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: forwarded.
        Isa::Amx | Isa::Avx512Vnni => unsafe { avx512::values_pairs(b, p, vp, out) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: forwarded.
        Isa::AvxVnni | Isa::Avx2 => unsafe { avx2::values_pairs(b, p, vp, out) },
        // SAFETY: forwarded.
        _ => unsafe { values_pairs(b, p, vp, out) },
    }
}

/// The reference scores: `Σ_c2` of [`dot_pair`] in order, times the scale.
fn scores_pairs(b: &PairBlock, q: &[u32], kp: &[u32], scores: &mut [f32]) {
    for r in 0..b.rows {
        for j in 0..b.keys {
            let acc = (0..b.pairs).fold(0.0, |acc, c2| {
                dot_pair(acc, q[r * b.pairs + c2], kp[c2 * b.keys + j])
            });
            scores[r * b.keys + j] = acc * b.scale;
        }
    }
}

/// The reference `P V`: `Σ_j2` of [`dot_pair`] in order.
///
/// # Safety
/// Each `out` pointer is valid for `dim` writes.
unsafe fn values_pairs(b: &PairBlock, p: &[u32], vp: &[u32], out: &[*mut f32]) {
    for (r, &row) in out.iter().enumerate() {
        for c in 0..b.dim {
            let acc = (0..b.key_pairs).fold(0.0, |acc, j2| {
                dot_pair(acc, p[r * b.key_pairs + j2], vp[j2 * b.dim + c])
            });
            // SAFETY: c < dim, per the contract.
            unsafe { row.add(c).write(acc) };
        }
    }
}
