//! A software model of the tile instructions, so the whole AMX driver (blocking, K blocks and
//! tails, row and column remainders, VNNI leftovers, the epilogue) is tested on any CPU with
//! AVX-512 VNNI. `Emulated::block` transcribes `Asm::block` step by step; on AMX hardware the
//! integration tests and the start-up self-test check the real instructions.

use std::cell::RefCell;

use super::{Block, TileConfig, TileUnit};

/// Palette-1 state: per tile its configured rows and bytes per row, and its 16 × 64 bytes.
struct Tiles {
    rows: [usize; 8],
    colsb: [usize; 8],
    data: [[[u8; 64]; 16]; 8],
}

thread_local! {
    static TILES: RefCell<Option<Tiles>> = const { RefCell::new(None) };
}

pub(super) struct Emulated;

fn with<R>(f: impl FnOnce(&mut Tiles) -> R) -> R {
    TILES.with_borrow_mut(|t| f(t.as_mut().expect("tile instruction before ldtilecfg")))
}

/// `tileloadd tmm{t}, [base + stride]`: rows × colsb bytes, the rest of the tile zeroed.
unsafe fn load(t: usize, base: *const u8, stride: usize) {
    assert!(!base.is_null(), "tile load from a null pointer");
    with(|s| {
        s.data[t] = [[0; 64]; 16];
        for r in 0..s.rows[t] {
            for c in 0..s.colsb[t] {
                // SAFETY: the caller of `Emulated::block` guarantees the tile is readable.
                s.data[t][r][c] = unsafe { base.add(r * stride + c).read() };
            }
        }
    })
}

/// `tilestored [base + stride], tmm{t}`.
unsafe fn store(t: usize, base: *mut u8, stride: usize) {
    assert!(!base.is_null(), "tile store to a null pointer");
    with(|s| {
        for r in 0..s.rows[t] {
            for c in 0..s.colsb[t] {
                // SAFETY: the caller of `Emulated::block` guarantees the tile is writable.
                unsafe { base.add(r * stride + c).write(s.data[t][r][c]) };
            }
        }
    })
}

/// `tdpbusd tmm{c}, tmm{a}, tmm{b}`: C[m][n] += Σ_k u8 A[m][4k+i] · s8 B[k][4n+i], wrapping;
/// the shape checks are those that make the real instruction fault.
fn dpbusd(c: usize, a: usize, b: usize) {
    with(|s| {
        let k = s.colsb[a] / 4;
        assert!(
            s.rows[b] == k && s.rows[c] == s.rows[a] && s.colsb[c] == s.colsb[b],
            "tdpbusd with mismatched tile shapes"
        );
        for m in 0..s.rows[c] {
            for n in 0..s.colsb[c] / 4 {
                let at = 4 * n..4 * n + 4;
                let mut acc = i32::from_le_bytes(s.data[c][m][at.clone()].try_into().unwrap());
                for kk in 0..k {
                    for i in 0..4 {
                        let x = i32::from(s.data[a][m][4 * kk + i]);
                        let w = i32::from(s.data[b][kk][4 * n + i] as i8);
                        acc = acc.wrapping_add(x * w);
                    }
                }
                s.data[c][m][at].copy_from_slice(&acc.to_le_bytes());
            }
        }
    })
}

impl TileUnit for Emulated {
    unsafe fn configure(cfg: &TileConfig) {
        let c = &cfg.0;
        assert_eq!(c[0], 1, "palette 1");
        let rows = std::array::from_fn(|t| usize::from(c[48 + t]));
        let colsb = std::array::from_fn(|t| {
            usize::from(u16::from_le_bytes([c[16 + 2 * t], c[17 + 2 * t]]))
        });
        for t in 0..8 {
            assert!(
                rows[t] <= 16 && colsb[t] <= 64 && colsb[t] % 4 == 0,
                "tile {t} shape"
            );
        }
        TILES.set(Some(Tiles {
            rows,
            colsb,
            data: [[[0; 64]; 16]; 8],
        }));
    }

    unsafe fn block(b: &Block) {
        let f = b.shape;
        // SAFETY (all calls below): the caller's contract for `block`.
        unsafe {
            load(0, b.init[0].cast(), b.init_stride);
            if f & 1 != 0 {
                load(1, b.init[1].cast(), b.init_stride);
            }
            if f & 2 != 0 {
                load(2, b.init[2].cast(), b.init_stride);
                if f & 1 != 0 {
                    load(3, b.init[3].cast(), b.init_stride);
                }
            }
            let k_step = |a0: *const u8, a1: *const u8, sa: usize, b0: *const i8, b1: *const i8| {
                load(4, a0, sa);
                load(6, b0.cast(), super::QUAD_BYTES);
                dpbusd(0, 4, 6);
                if f & 1 != 0 {
                    load(7, b1.cast(), super::QUAD_BYTES);
                    dpbusd(1, 4, 7);
                }
                if f & 2 != 0 {
                    load(5, a1, sa);
                    dpbusd(2, 5, 6);
                    if f & 1 != 0 {
                        dpbusd(3, 5, 7);
                    }
                }
            };
            let (mut a0, mut a1, mut b0, mut b1) = (b.a[0], b.a[1], b.b[0], b.b[1]);
            for _ in 0..b.chunks {
                k_step(a0, a1, b.a_stride, b0, b1);
                a0 = a0.wrapping_add(super::TILE_K);
                a1 = a1.wrapping_add(super::TILE_K);
                b0 = b0.wrapping_add(super::CHUNK_B_BYTES);
                b1 = b1.wrapping_add(super::CHUNK_B_BYTES);
            }
            if b.tail != 0 {
                k_step(
                    b.tail_a[0],
                    b.tail_a[1],
                    b.tail_a_stride,
                    b.tail_b[0],
                    b.tail_b[1],
                );
            }
            store(0, b.c[0].cast(), b.c_stride);
            if f & 1 != 0 {
                store(1, b.c[1].cast(), b.c_stride);
            }
            if f & 2 != 0 {
                store(2, b.c[2].cast(), b.c_stride);
                if f & 1 != 0 {
                    store(3, b.c[3].cast(), b.c_stride);
                }
            }
        }
    }

    unsafe fn release() {
        TILES.set(None);
    }
}
