//! Portable path: the same packed layout and epilogue, one row × one panel at a time.

use std::ops::Range;

use super::store::store_scalar;
use super::{Job, NR};

/// # Safety
/// `job.out` must be valid for writes of `rows` × the columns of `panels`, and no other thread
/// may access those elements meanwhile.
pub(crate) unsafe fn run(job: &Job, rows: Range<usize>, panels: Range<usize>) {
    let n = job.w.n();
    let a = job.a.data();
    let stride = job.a.row_stride();
    for panel in panels {
        let lines = job.w.panel_lines(panel);
        let compensation = job.w.panel_compensation(panel);
        let col0 = panel * NR;
        let width = NR.min(n - col0);
        for m in rows.clone() {
            let x = &a[m * stride..(m + 1) * stride];
            let mut acc: [i32; NR] = compensation.try_into().expect("NR compensation values");
            // One K-quad of the panel is 3 cache lines = 48 columns × 4 bytes.
            for (quad, x4) in lines.chunks_exact(NR * 4 / 64).zip(x.chunks_exact(4)) {
                for (col, acc) in acc.iter_mut().enumerate() {
                    let w4 = &quad[col / 16].0[(col % 16) * 4..(col % 16) * 4 + 4];
                    let dot = x4
                        .iter()
                        .zip(w4)
                        .fold(0i32, |s, (&xu, &wv)| s + i32::from(xu) * i32::from(wv));
                    *acc = acc.wrapping_add(dot);
                }
            }
            // SAFETY: columns col0..col0 + width < N of row m belong to this unit (caller's
            // contract).
            unsafe { store_scalar(job, m, col0, &acc[..width]) };
        }
    }
}
