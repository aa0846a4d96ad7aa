//! Weight packing into the `vpdpbusd` panel layout `[N/48][K/4][48][4]`.

use super::NR;

/// One 64-byte cache line; allocating the panels as lines makes every vector load aligned.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
pub(crate) struct CacheLine(pub(crate) [i8; 64]);

pub(crate) const LINES_PER_QUAD: usize = NR * 4 / 64;

/// s8 weights with one f32 scale per output channel, packed once at load time.
///
/// Within a panel of 48 output columns, each K-quad is one 192-byte row holding, per column, 4
/// consecutive K values: a zmm load gives 16 columns × 4 k, the operand of one `vpdpbusd`.
/// K is zero-padded to a multiple of 4 and N to a multiple of 48; padded columns have scale 0.
#[derive(Clone)]
pub struct PackedI8Weights {
    n: usize,
    k: usize,
    k_quads: usize,
    panels: usize,
    /// Per column, padded to `panels * NR`.
    col_scales: Vec<f32>,
    /// `−128 · Σ_k w[n][k]` per column, padded to `panels * NR`: cancels the +128 activation shift.
    col_compensation: Vec<i32>,
    data: Vec<CacheLine>,
}

impl PackedI8Weights {
    /// Packs row-major `w[n][k]` (PyTorch `Linear` layout, out × in) with per-column scales.
    pub fn pack(w: &[i8], n: usize, k: usize, col_scales: &[f32]) -> Self {
        assert_eq!(w.len(), n * k, "weights must be N×K = {n}×{k}");
        assert_eq!(col_scales.len(), n, "one scale per output column");
        let k_quads = k.div_ceil(4);
        let panels = n.div_ceil(NR);
        let mut data = vec![CacheLine([0; 64]); panels * k_quads * LINES_PER_QUAD];
        let mut col_compensation = vec![0i32; panels * NR];
        for (col, w_col) in w.chunks_exact(k.max(1)).enumerate().take(n) {
            let (panel, lane) = (col / NR, col % NR);
            for (kk, &v) in w_col.iter().enumerate() {
                let offset = ((panel * k_quads + kk / 4) * NR + lane) * 4 + kk % 4;
                data[offset / 64].0[offset % 64] = v;
            }
            let colsum = w_col
                .iter()
                .fold(0i32, |s, &v| s.wrapping_add(i32::from(v)));
            col_compensation[col] = colsum.wrapping_mul(-128);
        }
        let mut padded_scales = vec![0.0f32; panels * NR];
        padded_scales[..n].copy_from_slice(col_scales);
        Self {
            n,
            k,
            k_quads,
            panels,
            col_scales: padded_scales,
            col_compensation,
            data,
        }
    }

    /// A new matrix holding only the output columns `ids`, in that order (e.g. a vocabulary
    /// shortlist): each column's 4-byte K-quads are copied as they are, with its scale and
    /// compensation (a decoder does this once per batch, so it is kept to O(len(ids) · K/4)
    /// copies).
    pub fn select_outputs(&self, ids: &[u32]) -> Self {
        let (n, k_quads) = (ids.len(), self.k_quads);
        let panels = n.div_ceil(NR);
        let mut data = vec![CacheLine([0; 64]); panels * k_quads * LINES_PER_QUAD];
        let mut col_compensation = vec![0i32; panels * NR];
        let mut col_scales = vec![0.0f32; panels * NR];
        // Byte offset of (quad, column) in the layout: 4 bytes, always inside one line.
        let offset = |quad: usize, col: usize| ((col / NR * k_quads + quad) * NR + col % NR) * 4;
        for (dst, &id) in ids.iter().enumerate() {
            let src = id as usize;
            assert!(src < self.n, "output id {src} out of range (N={})", self.n);
            for quad in 0..k_quads {
                let (from, to) = (offset(quad, src), offset(quad, dst));
                let bytes = &self.data[from / 64].0[from % 64..from % 64 + 4];
                data[to / 64].0[to % 64..to % 64 + 4].copy_from_slice(bytes);
            }
            col_compensation[dst] = self.col_compensation[src];
            col_scales[dst] = self.col_scales[src];
        }
        Self {
            n,
            k: self.k,
            k_quads,
            panels,
            col_scales,
            col_compensation,
            data,
        }
    }

    /// Output channels (columns of the product).
    pub fn n(&self) -> usize {
        self.n
    }

    /// Input channels (the reduction length).
    pub fn k(&self) -> usize {
        self.k
    }

    /// Memory held by the packed weights, scales and compensation.
    pub fn bytes(&self) -> usize {
        self.data.len() * 64 + self.col_scales.len() * 4 + self.col_compensation.len() * 4
    }

    /// Per-column scales (length N).
    pub fn col_scales(&self) -> &[f32] {
        &self.col_scales[..self.n]
    }

    /// Per-column `−128 · colsum(w)` (length N).
    pub fn col_compensation(&self) -> &[i32] {
        &self.col_compensation[..self.n]
    }

    /// The original `w[col][kk]`, read back from the packed layout.
    pub fn weight(&self, col: usize, kk: usize) -> i8 {
        assert!(col < self.n && kk < self.k);
        let offset = (((col / NR) * self.k_quads + kk / 4) * NR + col % NR) * 4 + kk % 4;
        self.data[offset / 64].0[offset % 64]
    }

    pub(crate) fn panels(&self) -> usize {
        self.panels
    }

    pub(crate) fn k_quads(&self) -> usize {
        self.k_quads
    }

    pub(crate) fn k_padded(&self) -> usize {
        self.k_quads * 4
    }

    /// Start of panel `panel`; valid for reads of `k_quads · NR · 4` bytes when
    /// `panel < panels()`.
    pub(crate) fn panel_ptr(&self, panel: usize) -> *const i8 {
        debug_assert!(panel < self.panels);
        self.data[panel * self.k_quads * LINES_PER_QUAD..]
            .as_ptr()
            .cast::<i8>()
    }

    /// The cache lines of panel `panel`: `LINES_PER_QUAD` lines per K-quad.
    pub(crate) fn panel_lines(&self, panel: usize) -> &[CacheLine] {
        let start = panel * self.k_quads * LINES_PER_QUAD;
        &self.data[start..start + self.k_quads * LINES_PER_QUAD]
    }

    /// Padded per-column scales of panel `panel` (NR values).
    pub(crate) fn panel_col_scales(&self, panel: usize) -> &[f32] {
        &self.col_scales[panel * NR..(panel + 1) * NR]
    }

    /// Padded per-column compensation of panel `panel` (NR values).
    pub(crate) fn panel_compensation(&self, panel: usize) -> &[i32] {
        &self.col_compensation[panel * NR..(panel + 1) * NR]
    }
}

impl std::fmt::Debug for PackedI8Weights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackedI8Weights")
            .field("n", &self.n)
            .field("k", &self.k)
            .field("panels", &self.panels)
            .field("bytes", &self.bytes())
            .finish()
    }
}
