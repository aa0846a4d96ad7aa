//! The AMX instructions through `asm!`: tile configuration, release, and one block of tile
//! loads, `tdpbusd` products and stores.

use std::arch::asm;
use std::mem::offset_of;

use super::{Block, CHUNK_B_BYTES, QUAD_BYTES, TILE_K, TileConfig, TileUnit};

/// The AMX instructions through `asm!` (the AMX intrinsics and target features are unstable on
/// Rust 1.95). Tile registers can only be clobbers of an `asm!` block, so one block loads,
/// multiplies and stores its accumulators; only the configuration spans blocks.
pub(super) struct Asm;

/// One K step of a block: the two A and two B tiles, up to four products (`{f}`: shape).
macro_rules! k_step {
    () => {
        concat!(
            "tileloadd tmm4, [{a0} + {sa}*1]\n",
            "tileloadd tmm6, [{b0} + {sb}*1]\n",
            "tdpbusd tmm0, tmm4, tmm6\n",
            "test {f}, 1\n",
            "jz 7f\n",
            "tileloadd tmm7, [{b1} + {sb}*1]\n",
            "tdpbusd tmm1, tmm4, tmm7\n",
            "7:\n",
            "test {f}, 2\n",
            "jz 8f\n",
            "tileloadd tmm5, [{a1} + {sa}*1]\n",
            "tdpbusd tmm2, tmm5, tmm6\n",
            "test {f}, 1\n",
            "jz 8f\n",
            "tdpbusd tmm3, tmm5, tmm7\n",
            "8:\n",
        )
    };
}

impl TileUnit for Asm {
    #[inline]
    unsafe fn configure(cfg: &TileConfig) {
        // SAFETY: AMX is permitted (caller's contract) and `cfg` is a valid 64-byte
        // configuration; `ldtilecfg` reads it and zeroes the tiles.
        unsafe {
            asm!(
                "ldtilecfg [{cfg}]",
                cfg = in(reg) cfg.0.as_ptr(),
                out("tmm0") _, out("tmm1") _, out("tmm2") _, out("tmm3") _,
                out("tmm4") _, out("tmm5") _, out("tmm6") _, out("tmm7") _,
                options(nostack, readonly, preserves_flags),
            );
        }
    }

    #[inline]
    unsafe fn block(block: &Block) {
        // SAFETY: the caller guarantees the tiles are configured and every pointer the shape
        // uses covers its 16 rows × 64 bytes per chunk; missing tiles are skipped by the same
        // shape tests as in `k_step!`. Registers: `out(reg) _` operands are scratch registers
        // distinct from the inputs; memory is read and written through the pointers only.
        unsafe {
            asm!(
                // Accumulators from the compensation (stride 0) or the partial sums.
                "mov {s}, [{p} + {o_init_stride}]",
                "mov {t}, [{p} + {o_init}]",
                "tileloadd tmm0, [{t} + {s}*1]",
                "test {f}, 1",
                "jz 2f",
                "mov {t}, [{p} + {o_init} + 8]",
                "tileloadd tmm1, [{t} + {s}*1]",
                "2:",
                "test {f}, 2",
                "jz 3f",
                "mov {t}, [{p} + {o_init} + 16]",
                "tileloadd tmm2, [{t} + {s}*1]",
                "test {f}, 1",
                "jz 3f",
                "mov {t}, [{p} + {o_init} + 24]",
                "tileloadd tmm3, [{t} + {s}*1]",
                "3:",
                // Full 64-byte K chunks straight from the activations and the panels.
                "mov {a0}, [{p} + {o_a}]",
                "mov {a1}, [{p} + {o_a} + 8]",
                "mov {sa}, [{p} + {o_a_stride}]",
                "mov {b0}, [{p} + {o_b}]",
                "mov {b1}, [{p} + {o_b} + 8]",
                "mov {n}, [{p} + {o_chunks}]",
                "test {n}, {n}",
                "jz 5f",
                "4:",
                k_step!(),
                "add {a0}, {tile_k}",
                "add {a1}, {tile_k}",
                "add {b0}, {chunk_b}",
                "add {b1}, {chunk_b}",
                "dec {n}",
                "jnz 4b",
                "5:",
                // The zero-padded last chunk, if K mod 64 ≠ 0.
                "cmp qword ptr [{p} + {o_tail}], 0",
                "je 6f",
                "mov {a0}, [{p} + {o_tail_a}]",
                "mov {a1}, [{p} + {o_tail_a} + 8]",
                "mov {sa}, [{p} + {o_tail_a_stride}]",
                "mov {b0}, [{p} + {o_tail_b}]",
                "mov {b1}, [{p} + {o_tail_b} + 8]",
                k_step!(),
                "6:",
                // Accumulators out.
                "mov {s}, [{p} + {o_c_stride}]",
                "mov {t}, [{p} + {o_c}]",
                "tilestored [{t} + {s}*1], tmm0",
                "test {f}, 1",
                "jz 2f",
                "mov {t}, [{p} + {o_c} + 8]",
                "tilestored [{t} + {s}*1], tmm1",
                "2:",
                "test {f}, 2",
                "jz 3f",
                "mov {t}, [{p} + {o_c} + 16]",
                "tilestored [{t} + {s}*1], tmm2",
                "test {f}, 1",
                "jz 3f",
                "mov {t}, [{p} + {o_c} + 24]",
                "tilestored [{t} + {s}*1], tmm3",
                "3:",
                p = in(reg) std::ptr::from_ref(block),
                f = in(reg) block.shape,
                sb = in(reg) QUAD_BYTES,
                t = out(reg) _,
                s = out(reg) _,
                a0 = out(reg) _,
                a1 = out(reg) _,
                sa = out(reg) _,
                b0 = out(reg) _,
                b1 = out(reg) _,
                n = out(reg) _,
                tile_k = const TILE_K,
                chunk_b = const CHUNK_B_BYTES,
                o_a = const offset_of!(Block, a),
                o_a_stride = const offset_of!(Block, a_stride),
                o_b = const offset_of!(Block, b),
                o_chunks = const offset_of!(Block, chunks),
                o_tail = const offset_of!(Block, tail),
                o_tail_a = const offset_of!(Block, tail_a),
                o_tail_a_stride = const offset_of!(Block, tail_a_stride),
                o_tail_b = const offset_of!(Block, tail_b),
                o_init = const offset_of!(Block, init),
                o_init_stride = const offset_of!(Block, init_stride),
                o_c = const offset_of!(Block, c),
                o_c_stride = const offset_of!(Block, c_stride),
                out("tmm0") _, out("tmm1") _, out("tmm2") _, out("tmm3") _,
                out("tmm4") _, out("tmm5") _, out("tmm6") _, out("tmm7") _,
                options(nostack),
            );
        }
    }

    #[inline]
    unsafe fn release() {
        // SAFETY: AMX is permitted (caller's contract); `tilerelease` only resets tile state.
        unsafe {
            asm!(
                "tilerelease",
                out("tmm0") _, out("tmm1") _, out("tmm2") _, out("tmm3") _,
                out("tmm4") _, out("tmm5") _, out("tmm6") _, out("tmm7") _,
                options(nostack, nomem, preserves_flags),
            );
        }
    }
}
