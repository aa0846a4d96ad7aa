//! Compute kernels: GEMM/GEMV per ISA and scheme, and the row operations.
//!
//! * `cpu.rs`: the instruction-set paths, detection, and the one table that maps a path to its
//!   kernels; `amx_support.rs`: AMX detection and the tile permission.
//! * `int8/`, `lowbit/`: u8 × s8 and sub-8-bit GEMM, a file per ISA plus the packing; `fp32.rs`:
//!   the fp32 GEMM on the `gemm` crate; `fp32_rows.rs`: fp32 for a few rows (decoder steps).
//! * `epilogue.rs`: the one activation type; `simd/`: erf, exp and GELU once per vector width;
//!   `parallel.rs`: how a call is split over threads; `ops.rs`: row operations.

pub(crate) mod amx_support;
pub mod attention;
pub mod cpu;
pub mod epilogue;
pub mod fp32;
pub mod fp32_rows;
pub mod int8;
pub mod lowbit;
pub mod ops;
pub(crate) mod parallel;
pub mod simd;
