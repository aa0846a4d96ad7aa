//! Portable path over the packed layout: the same integer sums and f32 steps as the vector path.

use super::pack::{CacheLine, unit};
use super::{BLOCK, TILE_BLOCKS, TileJob, finish};

/// Computes every row of the job's tile.
///
/// # Safety
/// `job.out` must be valid for writes of all rows × the tile's columns (`< N`), and no other
/// thread may access those elements meanwhile.
pub(crate) unsafe fn tile(job: &TileJob) {
    let (w, a) = (job.w, job.a);
    let bits = w.bits();
    let (unit_lines, unit_k) = unit(bits);
    let units_per_group = w.seg() / unit_k;
    for block in job.tile * TILE_BLOCKS..(job.tile + 1) * TILE_BLOCKS {
        let col0 = block * BLOCK;
        if col0 >= w.n() {
            break;
        }
        let width = BLOCK.min(w.n() - col0);
        let lines = w.block_lines(block);
        let mut codes = [[0u8; 64]; 8];
        for r in 0..a.m() {
            let x = a.row(r);
            let mut facc = [0.0f32; BLOCK];
            for g in 0..w.groups() {
                let mut acc = [0i32; BLOCK];
                for unit in g * units_per_group..(g + 1) * units_per_group {
                    decode(
                        &lines[unit * unit_lines..(unit + 1) * unit_lines],
                        bits,
                        &mut codes,
                    );
                    for (j, sub_quad) in codes.iter().take(unit_k / 4).enumerate() {
                        let k = unit * unit_k + j * 4;
                        for (c, acc) in acc.iter_mut().enumerate() {
                            for (i, &xv) in x[k..k + 4].iter().enumerate() {
                                let u = sub_quad[c * 4 + i];
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

/// The sub-quads of one unit of lines as bytes, `out[j][c·4 + i]` (layout: `pack.rs`).
fn decode(lines: &[CacheLine], bits: u32, out: &mut [[u8; 64]; 8]) {
    if bits == 6 {
        // Bytes of four sub-quads at once, indexed alike.
        #[allow(clippy::needless_range_loop)]
        for p in 0..64 {
            let (a, b, c) = (lines[0].0[p], lines[1].0[p], lines[2].0[p]);
            out[0][p] = a & 0x3f;
            out[1][p] = b & 0x3f;
            out[2][p] = c & 0x3f;
            out[3][p] = (a >> 6) | ((b >> 6) << 2) | ((c >> 6) << 4);
        }
        return;
    }
    let mask = ((1u16 << bits) - 1) as u8;
    for (j, sub_quad) in out.iter_mut().take(8 / bits as usize).enumerate() {
        for (u, &byte) in sub_quad.iter_mut().zip(&lines[0].0) {
            *u = (byte >> (j as u32 * bits)) & mask;
        }
    }
}
