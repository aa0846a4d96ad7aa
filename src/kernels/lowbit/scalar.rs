//! Portable path over the packed layout: the same integer sums and f32 steps as the vector path.

use super::{BLOCK, TILE_BLOCKS, TileJob, finish};

/// Computes every row of the job's tile.
///
/// # Safety
/// `job.out` must be valid for writes of all rows × the tile's columns (`< N`), and no other
/// thread may access those elements meanwhile.
pub(super) unsafe fn tile(job: &TileJob) {
    let (w, a) = (job.w, job.a);
    let bits = w.bits();
    let per_byte = 8 / bits as usize;
    let k_per_line = 4 * per_byte;
    let lines_per_group = w.seg() / k_per_line;
    let mask = ((1u16 << bits) - 1) as u8;
    for block in job.tile * TILE_BLOCKS..(job.tile + 1) * TILE_BLOCKS {
        let col0 = block * BLOCK;
        if col0 >= w.n() {
            break;
        }
        let width = BLOCK.min(w.n() - col0);
        let lines = w.block_lines(block);
        for r in 0..a.m() {
            let x = a.row(r);
            let mut facc = [0.0f32; BLOCK];
            for g in 0..w.groups() {
                let mut acc = [0i32; BLOCK];
                for l in g * lines_per_group..(g + 1) * lines_per_group {
                    let line = &lines[l].0;
                    for j in 0..per_byte {
                        let x4 = &x[l * k_per_line + j * 4..][..4];
                        for (c, acc) in acc.iter_mut().enumerate() {
                            for (i, &xv) in x4.iter().enumerate() {
                                let u = (line[c * 4 + i] >> (j as u32 * bits)) & mask;
                                *acc = acc.wrapping_add(i32::from(u) * i32::from(xv));
                            }
                        }
                    }
                }
                let correction = w.offset().wrapping_mul(a.group_sum(r, g));
                for ((f, &acc), &s) in facc.iter_mut().zip(&acc).zip(w.block_scales(g, block)) {
                    let v = w.mul().wrapping_mul(acc).wrapping_sub(correction);
                    *f = (v as f32).mul_add(s, *f);
                }
            }
            for (c, &f) in facc.iter().enumerate().take(width) {
                let y = finish(
                    f,
                    a.row_scale(r),
                    job.bias.map(|b| b[col0 + c]),
                    job.activation,
                );
                // SAFETY: row r, column col0 + c < N belongs to this tile (caller's contract).
                unsafe { job.out.0.add(r * job.stride + col0 + c).write(y) };
            }
        }
    }
}
