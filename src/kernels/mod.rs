//! Compute kernels (GEMM/GEMV), one file per ISA and scheme, plus the fp32 row operations.

pub(crate) mod amx_support;
pub mod fp32;
pub mod int8;
pub mod lowbit;
pub mod ops;
