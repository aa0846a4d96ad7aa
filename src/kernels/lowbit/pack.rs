//! The packed weight layout and the activations laid out to match it.
//!
//! Columns are grouped in blocks of 16 (one zmm of i32 lanes); a block's codes along K are a run
//! of 64-byte lines. Byte `c·4 + i` of a line holds, for column `c` of the block, the codes of
//! `k = base + j·4 + i` for every sub-quad `j < 8 / bits`, code `j` in bits `j·bits..(j+1)·bits`.
//! So one shift and one AND turn a line into the 16 columns × 4 k unsigned bytes of one
//! `vpdpbusd`, for every code width alike.
//!
//! 6-bit codes do not divide a byte: a *unit* of three lines holds four sub-quads (16 k). Line
//! `t < 3` of a unit holds sub-quad `t` in the low 6 bits of its bytes, and the 6 bits of
//! sub-quad 3 are split over the top 2 bits of the three lines (line `t`: code bits `2t, 2t+1`).
//! Sub-quads 0..2 are one AND each; sub-quad 3 is three ANDs, three shifts and two ORs. Every
//! other width has one-line units. A 64-value group is 12 lines (6 bits per weight).

use crate::kernels::int8::QuantizedActivations;

use super::{BLOCK, GROUP_ALIGN, TILE};

/// One 64-byte cache line, so that every vector load is aligned.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
pub(crate) struct CacheLine(pub(crate) [u8; 64]);

/// Weights as unsigned codes of 1, 2, 4 or 8 bits with per-group, per-column f32 scales.
#[derive(Clone)]
pub struct PackedLowBit {
    bits: u32,
    offset: i32,
    mul: i32,
    n: usize,
    k: usize,
    planes: usize,
    /// Padded K of one plane.
    kp: usize,
    /// Length of a group along the packed K (multiple of 64).
    seg: usize,
    /// Groups along the packed K (all planes).
    groups: usize,
    /// Column blocks, padded to whole tiles.
    blocks: usize,
    /// The largest stored code: the AVX2 path multiplies codes with `vpmaddubsw`, which is exact
    /// only for codes ≤ 128 (see `avx2.rs`), so 8-bit codes above it take a split path.
    max_code: u8,
    /// `[groups][blocks · 16]`, zero for padded columns.
    scales: Vec<f32>,
    /// `[blocks][lines]`.
    data: Vec<CacheLine>,
}

impl PackedLowBit {
    /// Packs `codes[n][plane][k]` (unsigned, `< 2^bits`) with `scales[n][groups]`, groups of
    /// `group_len` columns (`None`: one group per row and plane). `value = mul · u − offset`
    /// per code (see the module comment of `kernels::lowbit`).
    #[allow(clippy::too_many_arguments)]
    pub fn pack(
        bits: u32,
        offset: i32,
        mul: i32,
        unsigned_codes: &[u8],
        scales: &[f32],
        n: usize,
        k: usize,
        planes: usize,
        group_len: Option<usize>,
    ) -> Self {
        assert!(
            matches!(bits, 1 | 2 | 4 | 6 | 8),
            "code width must be 1, 2, 4, 6 or 8 bits"
        );
        assert!(planes >= 1 && (planes == 1 || group_len.is_none()));
        assert_eq!(
            unsigned_codes.len(),
            n * planes * k,
            "codes must be N×planes×K"
        );
        let (seg, groups_per_plane) = match group_len {
            Some(g) => {
                assert!(
                    g > 0 && g % GROUP_ALIGN == 0,
                    "group must be a multiple of 64"
                );
                (g, k.div_ceil(g).max(1))
            }
            None => (k.div_ceil(GROUP_ALIGN).max(1) * GROUP_ALIGN, 1),
        };
        let kp = seg * groups_per_plane;
        let groups = groups_per_plane * planes;
        assert_eq!(scales.len(), n * groups, "scales must be N×groups");
        let blocks = n.div_ceil(TILE) * (TILE / BLOCK);
        let k_total = kp * planes;
        let lines = lines_for(bits, k_total);
        let mut data = vec![CacheLine([0; 64]); blocks * lines];
        let mut padded_scales = vec![0.0f32; groups * blocks * BLOCK];
        let max_code = unsigned_codes.iter().copied().max().unwrap_or(0);
        for col in 0..n {
            let (block, c) = (col / BLOCK, col % BLOCK);
            for p in 0..planes {
                let row = &unsigned_codes[(col * planes + p) * k..(col * planes + p + 1) * k];
                let block_lines = &mut data[block * lines..(block + 1) * lines];
                for (kk, &u) in row.iter().enumerate() {
                    debug_assert!(u32::from(u) < (1 << bits));
                    put_code(block_lines, bits, p * kp + kk, c, u);
                }
            }
            for g in 0..groups {
                padded_scales[g * blocks * BLOCK + col] = scales[col * groups + g];
            }
        }
        Self {
            bits,
            offset,
            mul,
            n,
            k,
            planes,
            kp,
            seg,
            groups,
            blocks,
            max_code,
            scales: padded_scales,
            data,
        }
    }

    /// A new matrix holding only the output columns `ids`, in that order (vocabulary
    /// shortlists); cost O(len(ids) · K).
    pub fn select_outputs(&self, ids: &[u32]) -> Self {
        // A column owns bytes `c·4..c·4+4` of every line of its block, whatever the code width
        // (see the module comment), so selecting columns is copying those 4 bytes per line: no
        // decoding and re-packing (which took a quarter of batch-1 decoding time with a
        // shortlist).
        let n = ids.len();
        let blocks = n.div_ceil(TILE) * (TILE / BLOCK);
        let lines = self.lines_per_block();
        let mut data = vec![CacheLine([0; 64]); blocks * lines];
        let mut scales = vec![0.0f32; self.groups * blocks * BLOCK];
        for (dst, &id) in ids.iter().enumerate() {
            let col = id as usize;
            assert!(col < self.n, "output id {col} out of range (N={})", self.n);
            let (src_c, dst_c) = (col % BLOCK, dst % BLOCK);
            let db = dst / BLOCK;
            let to = &mut data[db * lines..(db + 1) * lines];
            for (t, f) in to.iter_mut().zip(self.block_lines(col / BLOCK)) {
                t.0[dst_c * 4..dst_c * 4 + 4].copy_from_slice(&f.0[src_c * 4..src_c * 4 + 4]);
            }
            for g in 0..self.groups {
                scales[g * blocks * BLOCK + dst] = self.scales[g * self.blocks * BLOCK + col];
            }
        }
        Self {
            n,
            blocks,
            scales,
            data,
            // An upper bound is enough: it only chooses the exact AVX2 path for large codes.
            max_code: self.max_code,
            ..*self
        }
    }

    pub fn n(&self) -> usize {
        self.n
    }

    pub fn k(&self) -> usize {
        self.k
    }

    pub fn bits(&self) -> u32 {
        self.bits
    }

    /// Packed K over all planes (what the activations are laid out to).
    pub fn k_total(&self) -> usize {
        self.kp * self.planes
    }

    pub fn groups(&self) -> usize {
        self.groups
    }

    /// Memory held by codes and scales.
    pub fn bytes(&self) -> usize {
        self.data.len() * 64 + self.scales.len() * 4
    }

    pub(crate) fn offset(&self) -> i32 {
        self.offset
    }

    pub(crate) fn mul(&self) -> i32 {
        self.mul
    }

    // Only the x86 AVX2 path asks.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub(crate) fn max_code(&self) -> u8 {
        self.max_code
    }

    pub(crate) fn seg(&self) -> usize {
        self.seg
    }

    pub(crate) fn tiles(&self) -> usize {
        self.blocks * BLOCK / TILE
    }

    pub(crate) fn lines_per_block(&self) -> usize {
        lines_for(self.bits, self.k_total())
    }

    /// Lines of column block `block`.
    pub(crate) fn block_lines(&self, block: usize) -> &[CacheLine] {
        let l = self.lines_per_block();
        &self.data[block * l..(block + 1) * l]
    }

    /// Scales of group `g` for the 16 columns of block `block`.
    pub(crate) fn block_scales(&self, g: usize, block: usize) -> &[f32] {
        let at = g * self.blocks * BLOCK + block * BLOCK;
        &self.scales[at..at + BLOCK]
    }
}

/// Lines and k values of one unit of `bits`-bit codes (see the module comment).
pub(crate) const fn unit(bits: u32) -> (usize, usize) {
    if bits == 6 {
        (3, 16)
    } else {
        (1, 4 * (8 / bits as usize))
    }
}

/// Lines of one column block holding `k_total` (a multiple of 64) codes.
fn lines_for(bits: u32, k_total: usize) -> usize {
    let (lines, k) = unit(bits);
    k_total / k * lines
}

/// Stores code `u` of packed index `kt`, column `c` into a block's (zeroed) lines.
fn put_code(lines: &mut [CacheLine], bits: u32, kt: usize, c: usize, u: u8) {
    let (unit_lines, unit_k) = unit(bits);
    let (base, j, i) = ((kt / unit_k) * unit_lines, kt % unit_k / 4, kt % 4);
    if bits != 6 {
        lines[base].0[c * 4 + i] |= u << (j as u32 * bits);
    } else if j < 3 {
        lines[base + j].0[c * 4 + i] |= u;
    } else {
        for t in 0..3 {
            lines[base + t].0[c * 4 + i] |= ((u >> (2 * t)) & 3) << 6;
        }
    }
}

impl std::fmt::Debug for PackedLowBit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackedLowBit")
            .field("bits", &self.bits)
            .field("n", &self.n)
            .field("k", &self.k)
            .field("planes", &self.planes)
            .field("groups", &self.groups)
            .field("bytes", &self.bytes())
            .finish()
    }
}

/// Signed 8-bit activations laid out for one [`PackedLowBit`]: `m` rows of `k_total` bytes
/// (zero-padded, repeated per plane), the sum of each group, and one scale per row.
#[derive(Clone, Debug, Default)]
pub struct LowBitActivations {
    m: usize,
    k_total: usize,
    groups: usize,
    data: Vec<i8>,
    sums: Vec<i32>,
    scales: Vec<f32>,
}

impl LowBitActivations {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn m(&self) -> usize {
        self.m
    }

    pub fn k_total(&self) -> usize {
        self.k_total
    }

    /// Row `i` (`k_total` signed bytes).
    pub fn row(&self, i: usize) -> &[i8] {
        &self.data[i * self.k_total..(i + 1) * self.k_total]
    }

    pub fn row_scale(&self, i: usize) -> f32 {
        self.scales[i]
    }

    /// Sum of the codes of group `g` of row `i`.
    pub fn group_sum(&self, i: usize, g: usize) -> i32 {
        self.sums[i * self.groups + g]
    }

    /// Converts int8-kernel activations (`u8 = s8 + 128`) to this layout for `w`.
    pub(crate) fn fill_from(&mut self, qa: &QuantizedActivations, w: &PackedLowBit) {
        let (m, k, kt) = (qa.m(), qa.k(), w.k_total());
        self.m = m;
        self.k_total = kt;
        self.groups = w.groups();
        self.data.clear();
        self.data.resize(m * kt, 0);
        self.sums.clear();
        self.sums.resize(m * w.groups(), 0);
        self.scales.clear();
        self.scales.extend_from_slice(qa.row_scales());
        for r in 0..m {
            let src = &qa.row(r)[..k];
            let dst = &mut self.data[r * kt..(r + 1) * kt];
            for p in 0..w.planes {
                for (d, &u) in dst[p * w.kp..p * w.kp + k].iter_mut().zip(src) {
                    *d = (u ^ 0x80) as i8;
                }
            }
            for (g, s) in self.sums[r * w.groups()..(r + 1) * w.groups()]
                .iter_mut()
                .enumerate()
            {
                *s = dst[g * w.seg..(g + 1) * w.seg]
                    .iter()
                    .map(|&v| i32::from(v))
                    .sum();
            }
        }
    }

    /// Test helper: activations from signed codes `x[m][k]` and row scales, laid out for `w`.
    pub fn from_codes(x: &[i8], scales: &[f32], k: usize, w: &PackedLowBit) -> Self {
        assert_eq!(k, w.k());
        let m = scales.len();
        assert_eq!(x.len(), m * k);
        let mut out = Self::new();
        let (kt, groups) = (w.k_total(), w.groups());
        out.m = m;
        out.k_total = kt;
        out.groups = groups;
        out.data = vec![0; m * kt];
        out.sums = vec![0; m * groups];
        out.scales = scales.to_vec();
        for r in 0..m {
            let dst = &mut out.data[r * kt..(r + 1) * kt];
            for p in 0..w.planes {
                dst[p * w.kp..p * w.kp + k].copy_from_slice(&x[r * k..(r + 1) * k]);
            }
            for g in 0..groups {
                out.sums[r * groups + g] = dst[g * w.seg..(g + 1) * w.seg]
                    .iter()
                    .map(|&v| i32::from(v))
                    .sum();
            }
        }
        out
    }
}
