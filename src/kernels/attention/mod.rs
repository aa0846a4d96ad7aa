//! Scaled dot-product multi-head attention, one sequence at a time (padding never enters the
//! math): for every head h, `softmax(Q_h K_hᵀ · scale) V_h`, with a causal mask when asked.
//!
//! * The heads of a sequence (and the sequences of a batch, [`attend_batch`]) run in parallel on
//!   the caller's rayon pool, so even one sequence uses every thread.
//! * Per head with several queries: `K_h` is transposed once into scratch, then query rows in
//!   blocks of [`ROWS`] accumulate `Σ_c q[i][c] · kᵀ[c][j]` over c in order with fused
//!   multiply-adds, 16 (8) keys per vector. A single query (a decoder step) skips the transpose:
//!   each score is a dot product in 16 partial sums over c, reduced in a fixed tree. On AVX-512
//!   a single query takes all its heads in one pass, four at a time (`avx512_step.rs`), with the
//!   same operations per element.
//! * The softmax runs on the visible keys with the shared vector `exp`; `P V` accumulates
//!   `Σ_j p[i][j] · v[j][c]` over j in order. Every path (AVX-512, AVX2, scalar) performs the
//!   same IEEE operations in the same order per element, and sums in 16 partial sums reduce in
//!   the same tree on every path, so all give bit-identical outputs.

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(target_arch = "x86_64")]
mod avx512_step;
pub mod bf16;
mod scalar;

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};

use rayon::prelude::*;

use super::cpu::Isa;
use super::parallel::{PARALLEL_MIN_MACS, SendPtr, pool_threads};

/// Query rows computed together (their accumulators share each loaded key vector).
pub(crate) const ROWS: usize = 4;
/// The softmax sum's partial sums (one per key modulo 16) on every path.
pub(crate) const SUM_LANES: usize = 16;

/// Rows of a matrix whose columns `col..` hold a tensor, `stride` floats apart: the Q, K or V of
/// one sequence inside a fused `[Q | K | V]` (or `[K | V]`) activation matrix.
#[derive(Clone, Copy)]
pub struct Operand<'a> {
    pub data: &'a [f32],
    pub first_row: usize,
    pub rows: usize,
    pub stride: usize,
    pub col: usize,
}

impl Operand<'_> {
    /// Columns `col + off .. col + off + len` of row `r`.
    fn row(&self, r: usize, off: usize, len: usize) -> &[f32] {
        let start = (self.first_row + r) * self.stride + self.col + off;
        &self.data[start..start + len]
    }
}

/// How the model dimension splits into heads, and whether attention is causal.
#[derive(Clone, Copy, Debug)]
pub struct Heads {
    pub count: usize,
    pub dim: usize,
    /// Query i sees keys `0..=i + (keys − queries)` only.
    pub causal: bool,
    /// The number format of the two matmuls when several queries attend at once.
    pub precision: Precision,
}

/// The number format of attention's matmuls (`Q Kᵀ` and `P V`); scale, softmax and outputs are
/// f32 either way.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Precision {
    /// f32 throughout.
    #[default]
    F32,
    /// Q, K, P and V rounded to bfloat16, products summed in f32 ([`bf16`]), for several
    /// queries without pre-transposed keys (an encoder's self-attention); one query (a decoder
    /// step) and cross-attention over [`TransposedKeys`] stay f32.
    Bf16,
}

/// Picks the precision of quantized models' encoder attention: `f32` (the default) or `bf16`.
pub const PRECISION_ENV_VAR: &str = "QUANTSERVE_ATTENTION";

/// The precision of a quantized model's encoder attention for this process ([`PRECISION_ENV_VAR`];
/// f32 unless set to `bf16`). An f32 model's attention stays f32 regardless: it is the reference.
/// Read once; a bad value is an error each time it is asked for, so loading a model fails.
///
/// Why f32 is the default: on the Zen 4 where the bf16 path was built, it made the matmuls
/// about twice as fast but the MiniLM encoder slower overall (its attention is bound by reading
/// Q, K, V and by the softmax, and rounding adds work): `cargo bench --bench attention`.
pub fn quantized_precision() -> anyhow::Result<Precision> {
    static SETTING: std::sync::OnceLock<Result<Precision, String>> = std::sync::OnceLock::new();
    SETTING
        .get_or_init(|| match std::env::var(PRECISION_ENV_VAR).ok().as_deref() {
            None | Some("") | Some("f32") => Ok(Precision::F32),
            Some("bf16") => Ok(Precision::Bf16),
            Some(other) => Err(format!(
                "{PRECISION_ENV_VAR}={other:?}: expected \"f32\" or \"bf16\""
            )),
        })
        .clone()
        .map_err(|e| anyhow::anyhow!(e))
}

static BF16_EMULATION: AtomicBool = AtomicBool::new(false);

/// Makes the AVX-512 path compute bf16 pairs with two FMAs even where `vdpbf16ps` exists, so a
/// test on such a CPU can check the emulation gives the same bits (it does not change results,
/// only which instructions compute them).
#[doc(hidden)]
pub fn force_bf16_emulation(on: bool) {
    BF16_EMULATION.store(on, Ordering::Relaxed);
}

pub(crate) fn bf16_emulation_forced() -> bool {
    BF16_EMULATION.load(Ordering::Relaxed)
}

/// Keys visible to query `i` of `queries` when `keys` keys exist.
pub(crate) fn visible_keys(i: usize, queries: usize, keys: usize, causal: bool) -> usize {
    if causal {
        (i + 1 + keys).saturating_sub(queries).min(keys)
    } else {
        keys
    }
}

/// The keys of one sequence transposed once for every head (`[head][c][keys padded to 16]`), for
/// keys that many queries attend to over time (a decoder's cross-attention over its source).
pub struct TransposedKeys {
    data: Vec<f32>,
    keys: usize,
    /// Keys padded to a multiple of [`SUM_LANES`].
    padded: usize,
    dim: usize,
    /// The values head by head (`[head][key][c]`), when built [`TransposedKeys::with_values`]:
    /// a decoder step then reads each head's values as one contiguous block. In the `[K | V]`
    /// matrix, consecutive value rows lie a page or more apart, where the hardware prefetcher
    /// does not follow, and `perf` showed the step kernel waiting on each row's first load.
    values: Option<Vec<f32>>,
}

impl TransposedKeys {
    pub fn new(k: Operand, heads: Heads) -> Self {
        check(&k, heads.count * heads.dim);
        let (d, padded) = (heads.dim, k.rows.next_multiple_of(SUM_LANES));
        let mut data = vec![0.0; heads.count * d * padded];
        for h in 0..heads.count {
            transpose(
                &k,
                h * d,
                d,
                padded,
                &mut data[h * d * padded..(h + 1) * d * padded],
            );
        }
        Self {
            data,
            keys: k.rows,
            padded,
            dim: d,
            values: None,
        }
    }

    /// [`TransposedKeys::new`] plus a head-by-head copy of the values `v` (the rows of `k`'s
    /// sequence), which a single query's attention then reads instead of the `v` it is given:
    /// pass the same `v` to [`attend_transposed`].
    pub fn with_values(k: Operand, v: Operand, heads: Heads) -> Self {
        let mut keys = Self::new(k, heads);
        check(&v, heads.count * heads.dim);
        assert_eq!(k.rows, v.rows, "keys and values differ in rows");
        let d = heads.dim;
        let mut values = Vec::with_capacity(heads.count * v.rows * d);
        for h in 0..heads.count {
            for j in 0..v.rows {
                values.extend_from_slice(v.row(j, h * d, d));
            }
        }
        keys.values = Some(values);
        keys
    }

    fn head(&self, h: usize) -> &[f32] {
        let size = self.dim * self.padded;
        &self.data[h * size..(h + 1) * size]
    }
}

/// Columns `off..off + d` of `k`'s rows into `kt[c * padded + j]` (the padding keys stay 0).
/// Eight keys at a time, so that each write is 8 consecutive floats of one line of `kt` (one key
/// at a time wrote single floats `padded` apart, and `perf` put a 64-key head's transposition
/// at a quarter of its attention kernel's time).
fn transpose(k: &Operand, off: usize, d: usize, padded: usize, kt: &mut [f32]) {
    let mut j = 0;
    while j + 8 <= k.rows {
        let rows: [&[f32]; 8] = std::array::from_fn(|r| k.row(j + r, off, d));
        for c in 0..d {
            let line = &mut kt[c * padded + j..c * padded + j + 8];
            for (x, row) in line.iter_mut().zip(&rows) {
                *x = row[c];
            }
        }
        j += 8;
    }
    for j in j..k.rows {
        for (c, &x) in k.row(j, off, d).iter().enumerate() {
            kt[c * padded + j] = x;
        }
    }
}

/// One head of one sequence: the operands, and where its output goes.
pub(crate) struct HeadJob<'a> {
    pub(crate) q: Operand<'a>,
    pub(crate) k: Operand<'a>,
    /// The head's keys already transposed (`[c][keys padded]`), if the caller keeps them.
    pub(crate) kt: Option<&'a [f32]>,
    pub(crate) v: Operand<'a>,
    /// Column offset of the head in the operands and the output.
    pub(crate) off: usize,
    pub(crate) dim: usize,
    pub(crate) causal: bool,
    pub(crate) precision: Precision,
    pub(crate) scale: f32,
    /// Output row `i` of this sequence starts at `out + i * out_stride`.
    pub(crate) out: SendPtr<f32>,
    pub(crate) out_stride: usize,
}

/// Per-thread scratch: the transposed keys and a block of score rows, and the bf16 path's.
#[derive(Default)]
pub(crate) struct Scratch {
    pub(crate) kt: Vec<f32>,
    pub(crate) scores: Vec<f32>,
    pub(crate) bf16: bf16::Bf16Scratch,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::default();
}

/// Multi-head attention of one sequence, written to `out[i * out_stride + h * dim ..]`.
///
/// Panics if the CPU lacks `isa`, or if an operand or `out` is too short for its rows.
pub fn attend(
    isa: Isa,
    q: Operand,
    k: Operand,
    v: Operand,
    heads: Heads,
    out: &mut [f32],
    out_stride: usize,
) {
    #[cfg(target_arch = "x86_64")]
    if q.rows == 1 && matches!(isa, Isa::Amx | Isa::Avx512Vnni) {
        // A decoder step over its self-attention cache: every head at once (the same bits as
        // one head at a time).
        if let Err(e) = isa.ensure_available() {
            panic!("{e}");
        }
        let width = heads.count * heads.dim;
        for o in [&q, &k, &v] {
            check(o, width);
        }
        assert_eq!(k.rows, v.rows, "keys and values differ in rows");
        let scale = 1.0 / (heads.dim as f32).sqrt();
        return avx512_step_on_scratch(avx512_step::StepKeys::Rows(k), q, v, heads, scale, out);
    }
    let seqs = [(q, k, v, 0usize)];
    attend_batch(isa, &seqs, heads, out, out_stride);
}

/// Multi-head attention of several sequences: `(q, k, v, out_row)` each, sequence `s`'s output
/// row `i` at `out[(out_row + i) * out_stride + h * dim ..]`. Sequences must own disjoint
/// output rows. All (sequence, head) pairs run in parallel when the work is worth it.
///
/// Panics if the CPU lacks `isa`, on overlapping or too short buffers.
pub fn attend_batch(
    isa: Isa,
    seqs: &[(Operand, Operand, Operand, usize)],
    heads: Heads,
    out: &mut [f32],
    out_stride: usize,
) {
    if let Err(e) = isa.ensure_available() {
        panic!("{e}");
    }
    let width = heads.count * heads.dim;
    assert!(
        out_stride >= width,
        "output row stride below the heads' width"
    );
    let mut macs = 0usize;
    let mut rows_taken: Vec<(usize, usize)> = Vec::with_capacity(seqs.len());
    for (q, k, v, out_row) in seqs {
        check(q, width);
        check(k, width);
        check(v, width);
        assert_eq!(k.rows, v.rows, "keys and values differ in rows");
        if q.rows > 0 {
            assert!(
                (out_row + q.rows - 1) * out_stride + width <= out.len(),
                "output too short"
            );
            rows_taken.push((*out_row, out_row + q.rows));
        }
        macs += 2 * q.rows * k.rows * width;
    }
    rows_taken.sort_unstable();
    assert!(
        rows_taken.windows(2).all(|w| w[0].1 <= w[1].0),
        "sequences share output rows"
    );
    let out_ptr = SendPtr(out.as_mut_ptr());
    let scale = 1.0 / (heads.dim as f32).sqrt();
    let job = |index: usize| {
        // The whole `SendPtr` (not its raw field) is what the closure captures: it is Sync.
        let base = out_ptr;
        let (s, h) = (index / heads.count, index % heads.count);
        let (q, k, v, out_row) = seqs[s];
        HeadJob {
            q,
            k,
            kt: None,
            v,
            off: h * heads.dim,
            dim: heads.dim,
            causal: heads.causal,
            precision: heads.precision,
            scale,
            // The head's first output element; `wrapping_add` since an empty sequence's row may
            // lie past the end (it is never written).
            out: SendPtr(base.0.wrapping_add(out_row * out_stride + h * heads.dim)),
            out_stride,
        }
    };
    let run = |index: usize| {
        let job = job(index);
        if job.q.rows == 0 || job.dim == 0 {
            return;
        }
        SCRATCH.with_borrow_mut(|scratch| {
            // SAFETY: the CPU supports `isa` (checked above); the operands cover their rows and
            // the head's columns (`check`); the job's output elements (its rows × the head's
            // columns) lie inside `out` and belong to no other job (disjoint rows per sequence,
            // disjoint columns per head), and `out` stays borrowed until every job is done.
            unsafe { head(isa, &job, scratch) }
        });
    };
    let jobs = seqs.len() * heads.count;
    if macs < PARALLEL_MIN_MACS || pool_threads() <= 1 {
        (0..jobs).for_each(run);
    } else {
        (0..jobs).into_par_iter().with_max_len(1).for_each(run);
    }
}

/// [`attend`] over keys transposed beforehand ([`TransposedKeys`] of `k`): the same result as
/// `attend` with `k` for several queries (the scores take the transposed path for one query
/// too, so a decoder's cross-attention transposes its source once, not at every step).
///
/// Panics if the CPU lacks `isa`, if `kt` is not `k`'s, or on short buffers.
#[allow(clippy::too_many_arguments)]
pub fn attend_transposed(
    isa: Isa,
    q: Operand,
    k: Operand,
    kt: &TransposedKeys,
    v: Operand,
    heads: Heads,
    out: &mut [f32],
    out_stride: usize,
) {
    if let Err(e) = isa.ensure_available() {
        panic!("{e}");
    }
    let width = heads.count * heads.dim;
    for o in [&q, &k, &v] {
        check(o, width);
    }
    assert!(
        kt.keys == k.rows && kt.dim == heads.dim && kt.data.len() == width * kt.padded,
        "transposed keys of another shape"
    );
    assert!(
        out_stride >= width,
        "output row stride below the heads' width"
    );
    if q.rows == 0 || heads.dim == 0 {
        return;
    }
    assert!(
        (q.rows - 1) * out_stride + width <= out.len(),
        "output too short"
    );
    let scale = 1.0 / (heads.dim as f32).sqrt();
    #[cfg(target_arch = "x86_64")]
    if q.rows == 1 && matches!(isa, Isa::Amx | Isa::Avx512Vnni) {
        // A decoder step: every head at once (the same bits as one head at a time).
        let keys = avx512_step::StepKeys::Transposed(kt);
        return avx512_step_on_scratch(keys, q, v, heads, scale, out);
    }
    SCRATCH.with_borrow_mut(|scratch| {
        for h in 0..heads.count {
            let job = HeadJob {
                q,
                k,
                kt: Some(kt.head(h)),
                v,
                off: h * heads.dim,
                dim: heads.dim,
                causal: heads.causal,
                precision: heads.precision,
                scale,
                out: SendPtr(out[h * heads.dim..].as_mut_ptr()),
                out_stride,
            };
            // SAFETY: the CPU supports `isa`; the operands and `out` cover the rows and the
            // head's columns (checked above); one head at a time on this thread.
            unsafe { head(isa, &job, scratch) };
        }
    });
}

/// One query row's attention over every head with the AVX-512 step kernel, on this thread's
/// scratch. The caller has checked that the CPU supports AVX-512 (the AMX or VNNI path) and the
/// operands' shapes.
#[cfg(target_arch = "x86_64")]
fn avx512_step_on_scratch(
    keys: avx512_step::StepKeys,
    q: Operand,
    v: Operand,
    heads: Heads,
    scale: f32,
    out: &mut [f32],
) {
    let mut step = avx512_step::Step {
        q,
        keys,
        v,
        heads: heads.count,
        dim: heads.dim,
        scale,
        out: &mut out[..heads.count * heads.dim],
    };
    SCRATCH.with_borrow_mut(|scratch| {
        // SAFETY: the caller checked that the CPU supports AVX-512, which implies avx512f.
        unsafe { avx512_step::step(&mut step, &mut scratch.scores) }
    });
}

fn check(o: &Operand, width: usize) {
    if o.rows > 0 {
        assert!(
            (o.first_row + o.rows - 1) * o.stride + o.col + width <= o.data.len(),
            "attention operand too short"
        );
    }
}

/// One head: scores, softmax, `P V`, on the path of `isa`.
///
/// # Safety
/// As [`HeadJob`]'s fields say: the CPU supports `isa`, `out` is valid for the job's elements and
/// exclusive to it.
unsafe fn head(isa: Isa, job: &HeadJob, scratch: &mut Scratch) {
    if job.precision == Precision::Bf16 && job.q.rows > 1 && job.kt.is_none() {
        // SAFETY: forwarded.
        return unsafe { bf16::head(isa, job, &mut scratch.bf16, &mut scratch.scores) };
    }
    let (lk, d) = (job.k.rows, job.dim);
    let keys = lk.next_multiple_of(SUM_LANES);
    // Kᵀ: `kt[c * keys + j]`; the padding keys are zero (their scores are never read). A single
    // query without transposed keys reads K as it is.
    let Scratch {
        kt: kt_buf, scores, ..
    } = scratch;
    kt_buf.clear();
    let kt: &[f32] = match job.kt {
        Some(kt) => kt,
        None => {
            if job.q.rows > 1 {
                kt_buf.resize(d * keys, 0.0);
                transpose(&job.k, job.off, d, keys, kt_buf);
            }
            kt_buf
        }
    };
    scores.clear();
    scores.resize(ROWS * keys, 0.0);
    let lq = job.q.rows;
    let mut i0 = 0;
    while i0 < lq {
        let rows = (lq - i0).min(ROWS);
        let block = Block {
            job,
            i0,
            rows,
            keys,
        };
        // SAFETY: forwarded; the block's rows are inside the job's.
        unsafe {
            match isa {
                #[cfg(target_arch = "x86_64")]
                Isa::Amx | Isa::Avx512Vnni => avx512::block(&block, kt, scores),
                #[cfg(target_arch = "x86_64")]
                Isa::AvxVnni | Isa::Avx2 => avx2::block(&block, kt, scores),
                _ => scalar::block(&block, kt, scores),
            }
        }
        i0 += rows;
    }
}

/// A block of up to [`ROWS`] query rows of a head.
pub(crate) struct Block<'a> {
    pub(crate) job: &'a HeadJob<'a>,
    pub(crate) i0: usize,
    pub(crate) rows: usize,
    /// Keys padded to a multiple of [`SUM_LANES`]: the row length of `kt` and the scores.
    pub(crate) keys: usize,
}

impl Block<'_> {
    /// Whether the scores are dot products over K as it is (one query, keys not transposed).
    pub(crate) fn dot_scores(&self) -> bool {
        self.job.q.rows == 1 && self.job.kt.is_none()
    }

    /// Keys visible to row `r` of the block.
    pub(crate) fn visible(&self, r: usize) -> usize {
        let job = self.job;
        visible_keys(self.i0 + r, job.q.rows, job.k.rows, job.causal)
    }

    /// The query row `r` of the block (the head's columns).
    pub(crate) fn query(&self, r: usize) -> &[f32] {
        self.job.q.row(self.i0 + r, self.job.off, self.job.dim)
    }

    /// Key row `j` (the head's columns).
    pub(crate) fn key(&self, j: usize) -> &[f32] {
        self.job.k.row(j, self.job.off, self.job.dim)
    }

    /// Value row `j` (the head's columns).
    pub(crate) fn value(&self, j: usize) -> &[f32] {
        self.job.v.row(j, self.job.off, self.job.dim)
    }

    /// Value rows `0..rows` (`rows ≥ 1`), columns `c0 .. c0 + len` of the head, for a loop that
    /// addresses them by pointer: (row 0's column `c0`, the row stride). Checks once, here, that
    /// the last row holds those columns, so every row before it does too; the pointer carries the
    /// whole matrix's provenance.
    pub(crate) fn value_rows(&self, rows: usize, c0: usize, len: usize) -> (*const f32, usize) {
        let (v, off) = (&self.job.v, self.job.off + c0);
        assert!(rows >= 1 && c0 + len <= self.job.dim);
        let start = v.first_row * v.stride + v.col + off;
        assert!(start + (rows - 1) * v.stride + len <= v.data.len());
        (v.data[start..].as_ptr(), v.stride)
    }

    /// Where output row `r` of the block starts.
    pub(crate) fn out_row(&self, r: usize) -> *mut f32 {
        self.job
            .out
            .0
            .wrapping_add((self.i0 + r) * self.job.out_stride)
    }
}

/// The softmax sum's fixed reduction of the 16 partial sums: halves added pairwise (lanes l and
/// l + 8, then l and l + 4, ...), as the vector paths reduce their registers.
#[inline(always)]
pub(crate) fn reduce_lanes(mut s: [f32; SUM_LANES]) -> f32 {
    let mut width = SUM_LANES / 2;
    while width > 0 {
        for l in 0..width {
            s[l] += s[l + width];
        }
        width /= 2;
    }
    s[0]
}

/// The scalar reference of a whole sequence, independent of blocking and threads: what the tests
/// compare every path against.
pub fn reference(q: Operand, k: Operand, v: Operand, heads: Heads, out: &mut [f32], stride: usize) {
    let mut scratch = Scratch::default();
    let seqs = [(q, k, v, 0usize)];
    attend_batch_on(Isa::Scalar, &seqs, heads, out, stride, &mut scratch);
}

/// [`attend_batch`] on one thread with the given scratch (the reference and tests).
fn attend_batch_on(
    isa: Isa,
    seqs: &[(Operand, Operand, Operand, usize)],
    heads: Heads,
    out: &mut [f32],
    out_stride: usize,
    scratch: &mut Scratch,
) {
    let scale = 1.0 / (heads.dim as f32).sqrt();
    let width = heads.count * heads.dim;
    for &(q, k, v, out_row) in seqs {
        check(&q, width);
        check(&k, width);
        check(&v, width);
        if q.rows == 0 || heads.dim == 0 {
            continue;
        }
        assert!((out_row + q.rows - 1) * out_stride + width <= out.len());
        for h in 0..heads.count {
            let job = HeadJob {
                q,
                k,
                kt: None,
                v,
                off: h * heads.dim,
                dim: heads.dim,
                causal: heads.causal,
                precision: heads.precision,
                scale,
                out: SendPtr(out[(out_row * out_stride + h * heads.dim)..].as_mut_ptr()),
                out_stride,
            };
            // SAFETY: `isa` is the scalar path; the output covers the rows (asserted above).
            unsafe { head(isa, &job, scratch) };
        }
    }
}
